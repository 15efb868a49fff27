"""benchmarks/nearest_search.py: the nearest-reference search against the exhaustive maximum."""
from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import nearest_search  # noqa: E402

RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


def test_the_search_never_beats_the_exhaustive_maximum_and_the_summary_counts_it():
    rng = random.Random(0)
    parent = "".join(rng.choice(RESIDUES) for _ in range(40))
    mutant = lambda share: "".join(c if rng.random() > share else rng.choice(RESIDUES) for c in parent)  # noqa: E731
    references = [mutant(0.6) for _ in range(60)]
    rows = nearest_search.compare([mutant(0.3), mutant(0.5)], references)
    assert all(r["search"] <= r["exhaustive"] + 1e-12 and r["earlier_3mer_top20"] <= r["exhaustive"] + 1e-12
               for r in rows)
    s = nearest_search.summary(rows)
    assert s["samples"] == 2 and 0 <= s["earlier_3mer_top20_found_maximum"] <= s["search_found_maximum"] == 2
    assert s["search_mean_shortfall"] == 0.0


def test_the_summary_counts_misses_and_their_mean_shortfall():
    rows = [{"exhaustive": 0.5, "search": 0.5, "earlier_3mer_top20": 0.4},
            {"exhaustive": 0.6, "search": 0.55, "earlier_3mer_top20": 0.6}]
    s = nearest_search.summary(rows)
    assert (s["search_found_maximum"], s["earlier_3mer_top20_found_maximum"]) == (1, 1)
    assert abs(s["search_mean_shortfall"] - 0.025) < 1e-12 and abs(s["earlier_3mer_top20_mean_shortfall"] - 0.05) < 1e-12
