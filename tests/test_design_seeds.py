"""A request's random draws other than the sampler's (``--length auto`` lengths, a span's posterior
times and its drawn length) come from streams of their own, not from the sampler's seed: seeded with
the same number, design j's length was drawn with the very uniform that decided whether the sampler
revealed position j of design 0 at the first step, so lengths and reveal order were fully coupled."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from sedd import checkpoint
from sedd.alphabet import PROTEIN
from sedd.design import Request, plan_designs, stream, stream_seed
from sedd.schedule import LogLinearSchedule

SEEDS = range(60)


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
