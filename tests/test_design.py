"""Design planning (``sedd.design``): templates, lengths, span lengths and seeds as a user gives them,
and the request's own random streams.

A request's random draws other than the sampler's (``--length auto`` lengths, a span's posterior
times and its drawn length) come from streams of their own, not from the sampler's seed: seeded with
the same number, design j's length was drawn with the very uniform that decided whether the sampler
revealed position j of design 0 at the first step, so lengths and reveal order were fully coupled."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from sedd import checkpoint, design
from sedd.alphabet import PROTEIN
from sedd.design import Request, plan_designs, stream, stream_seed
from sedd.schedule import LogLinearSchedule

MAX = 128
SEEDS = range(60)


def spec(text, max_len=MAX, exclude=""):
    return PROTEIN.parse_spec(text, max_len, exclude)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from studio_helpers import tiny_checkpoint_dir
    return tiny_checkpoint_dir(tmp_path_factory.mktemp("ckpt"))


# ---- num_samples, seed and length: whole numbers in range, or refused ----------------------------------
@pytest.mark.parametrize("num_samples", [2.5, "3", True, 0, -1, float("nan"), None])
def test_plan_designs_refuses_a_num_samples_that_is_not_a_whole_number_above_0(bundled, num_samples):
    # before: 2.5 and "3" were TypeErrors from inside list arithmetic, True one design
    for what in ({"template": "MK__"}, {"length": 5}, {"length": "auto"}):
        with pytest.raises(ValueError, match=rf"num_samples must be a whole number, at least 1; got {num_samples!r}"):
            design.plan_designs(bundled, num_samples=num_samples, **what)


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64, 1.5, True, "3"])
def test_plan_designs_refuses_a_bad_seed_before_choosing_span_lengths(bundled, seed, monkeypatch):
    # before: 2**64 failed inside torch ("Overflow when unpacking long long"), 1.5 chose span lengths with
    # seed 1 (the sampler refused it only after the posterior's minutes), -1 drew lengths without complaint
    scored = []
    monkeypatch.setattr(design, "span_posterior", lambda *a, **k: scored.append(k))
    for what in ({"template": "MK[1-3]G"}, {"length": "auto"}, {"length": 5, "num_samples": 2}):
        with pytest.raises(ValueError, match=rf"seed must be a whole number between 0 and 2\*\*63 - 1, got {seed!r}"):
            design.plan_designs(bundled, seed=seed, **what)
    with pytest.raises(ValueError, match="seed must be a whole number"):
        design.plan_for_spec(bundled, spec("MK[1-3]G"), 2, seed=seed)
    assert scored == []


def test_a_whole_float_seed_and_num_samples_plan_as_their_ints(bundled):
    # before: length auto with seed 3.0 was a RuntimeError from torch's manual_seed
    as_float = design.plan_designs(bundled, length="auto", num_samples=4.0, seed=3.0)
    as_int = design.plan_designs(bundled, length="auto", num_samples=4, seed=3)
    assert [len(t) for t in as_float.templates] == [len(t) for t in as_int.templates]
    assert len(as_int.templates) == 4
    spans = design.plan_designs(bundled, template="MK[0-2]GF", num_samples=3.0, seed=5.0, t_samples=2)
    assert spans.span_lengths == design.plan_designs(bundled, template="MK[0-2]GF", num_samples=3, seed=5,
                                                     t_samples=2).span_lengths


@pytest.mark.parametrize("length", [2.5, float("inf"), float("nan"), True, "١٢", "0x10", -3.0])
def test_plan_designs_refuses_a_length_that_is_not_a_whole_number_instead_of_rounding_it(tiny, length):
    with pytest.raises(ValueError, match=r"give a template, or a length from 1 to 128 or 'auto'|between 1 and 128"):
        plan_designs(checkpoint.load(tiny), length=length)


def test_plan_designs_takes_whole_lengths_as_numbers_or_digits(tiny):
    model = checkpoint.load(tiny)
    assert [len(plan_designs(model, length=n).templates[0]) for n in (7, 7.0, " 7 ", "007")] == [7, 7, 7, 7]


def test_plan_designs_refuses_a_template_and_a_length_together_and_an_unknown_span_mode(tiny):
    model = checkpoint.load(tiny)
    with pytest.raises(ValueError, match=r"give a template or a length, not both; got template 'MK__' and length 5"):
        plan_designs(model, template="MK__", length=5)
    for what in ({"length": "auto", "num_samples": 3}, {"length": 5}, {"template": "MK__"}):
        with pytest.raises(ValueError, match=r"span lengths must be chosen by one of sample, map; got 'mode'"):
            plan_designs(model, span_lengths="mode", **what)


# ---- the request's random streams ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_lengths(tmp_path_factory):
    """A tiny random model whose length histogram makes 40 and 50 equally likely."""
    from sedd.model import ScoreNetwork, preset
    torch.manual_seed(0)
    net = ScoreNetwork(preset("tiny", vocab_size=PROTEIN.size, dropout=0.0)).eval()
    path = checkpoint.save(tmp_path_factory.mktemp("ckpt") / "m", net, PROTEIN, LogLinearSchedule(), {40: 1, 50: 1},
                           meta={})
    return checkpoint.load(path)


def first_step_reveals(model, templates, seed) -> bool:
    """Whether the sampler (2 steps: each position revealed at the first with probability ½) reveals
    position 0 of design 0 at its first step."""
    frames = stream(model, Request(templates, steps=2, seed=seed))
    next(frames)
    return bool(next(frames).changed[0, 0])


def assert_independent(table: Counter) -> None:
    """Every cell of the 2 × 2 table (about 15 of 60 each when independent) is well filled; fully
    coupled, two of them are empty."""
    assert len(table) == 4 and min(table.values()) >= 5, dict(table)


def test_auto_lengths_do_not_decide_the_samplers_reveal_order(two_lengths):
    table = Counter()
    for seed in SEEDS:
        templates = plan_designs(two_lengths, length="auto", num_samples=4, seed=seed).templates
        table[len(templates[0]), first_step_reveals(two_lengths, templates, seed)] += 1
    assert_independent(table)


def test_drawn_span_lengths_do_not_decide_the_samplers_reveal_order(two_lengths):
    plan = plan_designs(two_lengths, template="[1-2]ACDEFGHIK", num_samples=1, t_samples=4)
    assert 0.2 < plan.posterior.factors[0][1][0] < 0.8          # both lengths are drawn often
    table = Counter()
    for seed in SEEDS:
        plan = plan_designs(two_lengths, template="[1-2]ACDEFGHIK", num_samples=4, seed=seed, t_samples=4)
        table[plan.templates[0].span_lengths[0], first_step_reveals(two_lengths, plan.templates, seed)] += 1
    assert_independent(table)


def test_the_streams_are_distinct_and_reproducible():
    seeds = {stream_seed(7, p) for p in ("lengths", "span times", "span lengths")} | {7, stream_seed(8, "lengths")}
    assert len(seeds) == 5 and stream_seed(7, "lengths") == stream_seed(7, "lengths")


def test_exclude_none_means_no_residue_is_banned_and_other_types_are_refused(bundled):
    """The studio reads a missing exclusion as none; the library died in a bare TypeError."""
    assert plan_designs(bundled, template="MK__GF", num_samples=1, exclude=None).templates[0] == \
        plan_designs(bundled, template="MK__GF", num_samples=1).templates[0]
    with pytest.raises(ValueError, match="excluded residues must be text"):
        plan_designs(bundled, template="MK__GF", num_samples=1, exclude=["C"])
