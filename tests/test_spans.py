"""Span lengths chosen by the model; allowed sets and excluded residues, which are never violated."""
import itertools
import math
import random

import pytest
import torch
from conftest import write_fasta

from sedd import checkpoint, spans
from sedd.alphabet import PROTEIN
from sedd.design import Request, decode_rows, plan_designs, stream
from sedd.sampler import last_frame
from sedd.schedule import LogLinearSchedule
from sedd.spans import SpanPosterior, choose_lengths, log_length_prior, span_posterior
from sedd.train import TrainConfig, train


def designs(model, template, num_samples=8, seed=0, temperature=1.0, steps=16, **plan_kwargs) -> list[str]:
    plan = plan_designs(model, template=template, num_samples=num_samples, seed=seed, **plan_kwargs)
    frame = last_frame(stream(model, Request(plan.templates, steps, temperature, seed)))
    return decode_rows(model, frame, [len(t) for t in plan.templates])


# ---- the posterior's pieces ------------------------------------------------------------------------------------
def test_length_prior_is_the_smoothed_histogram():
    prior = log_length_prior({10: 3, 12: 1}, [10, 11, 12, 13], max_len=16)
    # counts + 1 over 4 counts + 16 lengths
    assert [math.exp(p) for p in prior] == pytest.approx([4 / 20, 1 / 20, 2 / 20, 1 / 20])
    assert log_length_prior({}, [5, 6], max_len=8) == pytest.approx([math.log(1 / 8)] * 2)


def test_top_combinations_of_independent_spans_match_brute_force():
    rnd = random.Random(0)
    factors = []
    for n in (4, 6, 3):
        w = [rnd.random() for _ in range(n)]
        factors.append((list(range(2, 2 + n)), [x / sum(w) for x in w]))
    post = SpanPosterior("span by span", factors)
    brute = sorted(((c, math.prod(f[1][k - 2] for f, k in zip(factors, c)))
                    for c in itertools.product(*(f[0] for f in factors))), key=lambda cp: -cp[1])[:10]
    assert [(tuple(d["lengths"]), pytest.approx(d["prob"])) for d in post.top(10)] == brute
    assert post.mode() == brute[0][0]


def test_draws_follow_the_posterior_and_map_takes_the_mode():
    post = SpanPosterior("enumeration", [([3, 4, 5], [0.2, 0.5, 0.3])], [((3,), 0.2), ((4,), 0.5), ((5,), 0.3)])
    draws = choose_lengths(post, 20000, "sample", seed=1)
    for k, p in ((3, 0.2), (4, 0.5), (5, 0.3)):
        assert draws.count((k,)) / len(draws) == pytest.approx(p, abs=0.015)
    assert choose_lengths(post, 20000, "sample", seed=1) == draws
    assert choose_lengths(post, 5, "map", seed=1) == [(4,)] * 5
    with pytest.raises(ValueError, match="one of sample, map; got 'mean'"):
        choose_lengths(post, 5, "mean", seed=1)


@pytest.fixture
def fake_likelihood(monkeypatch):
    """log p_θ(given | layout) = −(k₁ − 3)² − (k₂ − 5)² …, recording every scored combination and seed."""
    calls = []

    def loglik(model, spec, combos, *, t_samples, seed, progress=False, check=None):
        calls.append((list(combos), seed))
        exact = torch.tensor([-sum((k - t) ** 2 for k, t in zip(c, (3, 5, 7))) for c in combos], dtype=torch.float64)
        return exact.expand(2, -1)                          # two times, each the exact value: no error
    monkeypatch.setattr(spans, "observed_log_likelihoods", loglik)
    return calls


def test_up_to_200_combinations_are_enumerated_exactly(model, fake_likelihood):
    spec = PROTEIN.parse_spec("MK[1-10]G[1-20]V", model.max_len)          # 200 combinations
    post = span_posterior(model, spec, seed=4)
    assert post.method == "enumeration" and len(post.joint) == 200
    prior = dict(zip(range(6, 35), log_length_prior(model.length_histogram, list(range(6, 35)), model.max_len)))
    log_w = {c: prior[4 + sum(c)] - (c[0] - 3) ** 2 - (c[1] - 5) ** 2 for c, _ in post.joint}
    z = math.log(sum(math.exp(v) for v in log_w.values()))
    assert {c: p for c, p in post.joint} == pytest.approx({c: math.exp(v - z) for c, v in log_w.items()})
    assert post.mode() == (3, 5)
    assert sum(post.factors[0][1]) == pytest.approx(1.0)


def test_the_family_length_prior_weighs_each_layout(model, fake_likelihood):
    """p(lengths | given) ∝ p(total length) · p(given | lengths): a layout of a length the family often
    has gains on the likelihood alone. (The fixture's histogram is flat over the last test's lengths.)"""
    histogram = {10: 40, 12: 5}                      # "MK[1-10]G" is 10 residues long at k = 7
    skewed = type(model)(**{**vars(model), "length_histogram": histogram})
    post = span_posterior(skewed, PROTEIN.parse_spec("MK[1-10]G", model.max_len), seed=4)
    prior = log_length_prior(histogram, [3 + k for k in range(1, 11)], model.max_len)
    log_w = {(k,): prior[k - 1] - (k - 3) ** 2 for k in range(1, 11)}
    z = math.log(sum(math.exp(v) for v in log_w.values()))
    assert {c: p for c, p in post.joint} == pytest.approx({c: math.exp(v - z) for c, v in log_w.items()})
    flat = dict(span_posterior(model, PROTEIN.parse_spec("MK[1-10]G", model.max_len), seed=4).joint)
    assert dict(post.joint)[(7,)] / dict(post.joint)[(3,)] == pytest.approx(41 * flat[(7,)] / flat[(3,)])


def test_more_than_200_combinations_are_chosen_span_by_span(model, fake_likelihood):
    spec = PROTEIN.parse_spec("M[1-10]K[1-10]G[1-10]V", model.max_len)    # 1000 combinations
    post = span_posterior(model, spec, seed=4)
    assert post.method == "span by span" and post.joint == []
    assert [len(c) for c, _ in fake_likelihood] == [10, 10, 10]          # each span over its range, once
    assert post.mode() == (3, 5, 7)
    assert fake_likelihood[1][0][0] == (3, 1, 6)      # span 2 scored with span 1 at its mode, span 3 at its midpoint


def test_a_single_combination_needs_no_likelihood(model, fake_likelihood):
    post = span_posterior(model, PROTEIN.parse_spec("MK[4-4]G", model.max_len))
    assert post.top() == [{"lengths": [4], "prob": 1.0}] and fake_likelihood == []


@pytest.mark.parametrize("template", ["MK[1-4]GF[2-3]RE", "MKVLAGWYK[1-30]GFR[1-10]PQ", "[2-5]", "MK[4-4]G"],
                         ids=["enumerated", "span by span", "nothing given", "one combination"])
def test_the_posterior_counts_the_network_rows_it_evaluated(model, template):
    """``sedd.sample --json`` reports them as ``span_posterior_nfe``: ``nfe_per_sample`` is the sampler's alone."""
    rows, graded = [], []
    counting = model.model.register_forward_hook(
        lambda _net, args, _out: rows.append(args[0].shape[0]) or graded.append(torch.is_grad_enabled()))
    try:
        post = span_posterior(model, PROTEIN.parse_spec(template, model.max_len), t_samples=4)
    finally:
        counting.remove()
    assert post.nfe == sum(rows)
    assert not any(graded), "the estimate ran the network with autograd on (a graph per candidate, for nothing)"
    assert (post.nfe > 0) == (template not in ("[2-5]", "MK[4-4]G"))


class ContextFree(torch.nn.Module):
    """A "network" whose prediction ignores position and context: one fixed distribution everywhere."""

    pad_id = PROTEIN.pad_id

    def __init__(self):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.randn(PROTEIN.size, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return self.logits.expand(*x.shape, -1)


def test_each_probability_carries_its_monte_carlo_error(model, monkeypatch):
    """Two candidates whose K = 4 terms (one per stratum) are known: p₁ = σ(Δ log prior + mean(a − b)),
    and its error is p₁(1 − p₁) times that of mean(a − b), which pairs adjacent strata:
    √(Σ_j (d_{2j} − d_{2j+1})² / (2 · 2 · 4)) with d = a − b. For the joint, the marginal and ``top``.
    (The studio showed "0.54" for a probability that moved by ±0.1 with the seed.)"""
    a = torch.tensor([-3.0, -1.0, -2.5, 0.5], dtype=torch.float64)
    b = torch.tensor([-2.0, -2.0, -2.0, -1.0], dtype=torch.float64)
    monkeypatch.setattr(spans, "observed_log_likelihoods", lambda *args, **kw: torch.stack([a, b], 1))
    post = span_posterior(model, PROTEIN.parse_spec("MK[3-4]G", model.max_len), seed=0)
    prior = log_length_prior(model.length_histogram, [6, 7], model.max_len)
    d = (a - b).tolist()
    p1 = 1 / (1 + math.exp(-(prior[0] - prior[1] + sum(d) / 4)))
    error = p1 * (1 - p1) * math.sqrt(((d[0] - d[1]) ** 2 + (d[2] - d[3]) ** 2) / 16)
    assert post.joint_stderr == pytest.approx([error, error])
    assert post.factor_stderr == [pytest.approx([error, error])]
    best = [3] if p1 > 0.5 else [4]
    assert post.top(1, with_stderr=True) == [{"lengths": best, "prob": pytest.approx(max(p1, 1 - p1)),
                                              "stderr": pytest.approx(error)}]
    assert post.top(1) == [{"lengths": best, "prob": pytest.approx(max(p1, 1 - p1))}]      # the JSON's, as before


def test_an_error_is_never_more_than_a_probability_can_spread(model, monkeypatch):
    """Log-weights uncertain by tens of nats (two lengths the model cannot tell apart from a few
    draws): the delta method's linear term gave "0.49 ± 1.1"; no estimate in [0, 1] with mean p
    spreads by more than √(p(1 − p))."""
    a = torch.tensor([-90.0, 0.0, -60.0, 30.0], dtype=torch.float64)
    monkeypatch.setattr(spans, "observed_log_likelihoods", lambda *args, **kw: torch.stack([a, a.flip(0)], 1))
    post = span_posterior(model, PROTEIN.parse_spec("MK[3-4]G", model.max_len), seed=0)
    for (_, p), error in zip(post.joint, post.joint_stderr):
        assert error == pytest.approx(math.sqrt(p * (1 - p)))


def test_the_error_covers_the_spread_over_seeds(model):
    """The reported error against the probability's real spread over 40 seeds: about the same size
    (it ignores the stratification of the levels, which can only make it larger). With sampled times
    it was 0.67 of the spread here: their heavy tail is rarely drawn."""
    import statistics

    spec = PROTEIN.parse_spec("MKVL[2-5]GFRP", model.max_len)
    probs, errors = [], []
    for seed in range(40):
        post = span_posterior(model, spec, t_samples=8, seed=seed)
        probs.append(post.factors[0][1][0])
        errors.append(post.factor_stderr[0][0])
    spread = statistics.stdev(probs)
    assert spread > 0.001, "the test needs a posterior that moves with the seed"
    assert 0.8 * spread < statistics.mean(errors) < 2 * spread, (spread, statistics.mean(errors))


def test_span_by_span_errors_multiply_through_top(model, monkeypatch):
    post = spans.SpanPosterior("span by span", [([1, 2], [0.75, 0.25]), ([5, 6], [0.4, 0.6])],
                               factor_stderr=[[0.1, 0.1], [0.2, 0.2]])
    best = post.top(1, with_stderr=True)[0]
    assert best["lengths"] == [1, 6] and best["prob"] == pytest.approx(0.45)
    assert best["stderr"] == pytest.approx(math.sqrt((0.6 * 0.1) ** 2 + (0.75 * 0.2) ** 2))


def test_every_candidate_gets_the_same_times_and_masks(model):
    """Common random numbers: under a model blind to the layout every candidate scores exactly the same."""
    blind = checkpoint.Checkpoint(ContextFree(), model.alphabet, model.schedule, model.length_histogram)
    spec = PROTEIN.parse_spec("MKVLAGWYK[1-4]GFRPQ", model.max_len)
    def scores(model, spec, combos):
        return spans.observed_log_likelihoods(model, spec, combos, t_samples=8, seed=11).mean(0).tolist()

    blinded = scores(blind, spec, [(1,), (2,), (3,), (4,)])
    assert blinded == pytest.approx([blinded[0]] * 4, rel=1e-6)                  # up to float32 sums
    real = scores(model, spec, [(1,), (2,), (3,), (4,)])
    assert max(real) - min(real) > 0.01                                          # a real model tells them apart
    assert scores(model, spec, [(1,), (2,), (3,), (4,)]) == real
    assert scores(model, PROTEIN.parse_spec("[2-3]", model.max_len), [(2,), (3,)]) == [0.0, 0.0]   # nothing given


@pytest.mark.parametrize("template, layouts", [("MK[1-10]G", 10), ("MK[1-10]G[1-20]V", 200),
                                               ("M[1-10]K[1-10]G[1-10]V", 30)])
def test_the_count_of_candidate_layouts_is_the_number_the_estimate_scores(model, template, layouts):
    """The studio's "n of N candidate layouts scored": N is how often ``check`` is called, jointly
    enumerated (up to 200) or span by span."""
    spec = PROTEIN.parse_spec(template, model.max_len)
    calls = []
    span_posterior(model, spec, seed=0, check=lambda: calls.append(1))
    assert spans.candidate_layouts(spec) == len(calls) == layouts


def test_a_stop_during_the_estimate_leaves_the_network_in_its_mode():
    """``check`` raising (the studio's Stop) abandons the estimate; the network keeps its training mode."""
    net = ContextFree().train()
    blind = checkpoint.Checkpoint(net, PROTEIN, LogLinearSchedule(), {})
    spec = PROTEIN.parse_spec("MKV[1-4]GF", 64)
    calls = []

    def stop():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        spans.observed_log_likelihoods(blind, spec, [(1,), (2,), (3,)], t_samples=4, seed=0, check=stop)
    assert net.training


def test_the_paired_bound_is_the_partial_observation_elbo(model):
    """Same expectation as ``estimate_elbo(observed=...)``: the two agree within their Monte Carlo error."""
    from sedd.data import Dataset
    from sedd.likelihood import estimate_elbo

    spec = PROTEIN.parse_spec("MKVLAGWYK[3-3]GFRPQWW", model.max_len)
    tpl = spec.expand((3,))
    K = 2048
    ours = -spans.observed_log_likelihoods(model, spec, [(3,)], t_samples=K, seed=1).mean().item()
    observed = [not d for d in tpl.designed]
    ref = estimate_elbo(model.model, Dataset(["x"], [[0 if d else t for t, d in zip(tpl.tokens, tpl.designed)]]),
                        model.schedule, model.alphabet.mask_id, t_samples=K, seed=2, observed=[observed])
    stderr = ref["per_sequence_stderr"][0] * math.sqrt(2)      # both estimates carry about the same error
    assert abs(ours - ref["per_sequence"][0]) < 4 * stderr
    assert stderr < 0.05 * ref["per_sequence"][0]            # and the check is not vacuous


# ---- allowed sets and excluded residues: never violated (exact conditioning is the particles' work) -----
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_allowed_sets_and_excluded_residues_are_never_violated(model, temperature):
    template = "MK[KR]G[^ACDEFGHIKL]__[W]" + "_" * 12
    seen = set()
    for seed in range(6):
        for seq in designs(model, template, num_samples=16, seed=seed, temperature=temperature, exclude="CM"):
            assert seq[:2] == "MK" and seq[3] == "G"
            assert seq[2] in "KR" and seq[4] in "MNPQRSTVWY" and seq[4] != "M" and seq[7] == "W"
            assert "C" not in seq[5:] and "M" not in seq[2:]
            seen.add(seq[2])
    assert seen == {"K", "R"}          # both allowed residues are drawn: the restriction is not a fixed choice


def test_omit_without_a_template_applies_to_every_position(model):
    plan = plan_designs(model, length=30, num_samples=32, seed=3, exclude="CWM")
    frame = last_frame(stream(model, Request(plan.templates, 16, 2.0, 3)))
    assert not set("CWM") & set("".join(decode_rows(model, frame, [30] * 32)))


def test_n_in_brackets_gives_exactly_what_n_masks_give(model):
    assert designs(model, "MK[5]GF[2]R", seed=9) == designs(model, "MK_____GF__R", seed=9)
    assert designs(model, "MK[5-5]GF", seed=9) == designs(model, "MK_____GF", seed=9)
    assert designs(model, "MK[ACDEFGHIKLMNPQRSTVWY]G", seed=2) == designs(model, "MK_G", seed=2)


def test_each_design_takes_its_drawn_lengths(model):
    plan = plan_designs(model, template="MKV[0-6]GGG[1-2]W", num_samples=12, seed=5)
    assert len({tuple(k) for k in plan.span_lengths}) > 1        # a random model: a broad posterior
    for tpl, (k1, k2) in zip(plan.templates, plan.span_lengths):
        assert PROTEIN.decode(tpl.tokens) == "MKV" + "_" * k1 + "GGG" + "_" * k2 + "W"
    probs = [d["prob"] for d in plan.posterior.top()]
    assert len(probs) == 10 and probs == sorted(probs, reverse=True)
    mapped = plan_designs(model, template="MKV[0-6]GGG[1-2]W", num_samples=3, seed=5, span_lengths="map")
    assert mapped.span_lengths == [list(plan.posterior.mode())] * 3


# ---- a synthetic family whose loop always has 5 residues -------------------------------------------------------
HEAD, MOTIF_A, LOOP, MOTIF_B = 8, "WCHHMW", 5, "YPFWYH"


def loop_family(n: int, rng: random.Random) -> list[str]:
    """Random head (8) · motif A · random loop (5) · motif B · random tail of 4–14 residues."""
    def rand(k):
        return "".join(rng.choice(PROTEIN.residues) for _ in range(k))
    return [rand(HEAD) + MOTIF_A + rand(LOOP) + MOTIF_B + rand(rng.randint(4, 14)) for _ in range(n)]


@pytest.mark.slow
def test_a_family_with_a_fixed_loop_length_recovers_it(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "loops.fasta"
    write_fasta(path, loop_family(600, rng))
    torch.manual_seed(0)
    config = TrainConfig(data=str(path), out=str(tmp_path / "run"), preset="tiny", tokens_per_batch=1024,
                         warmup_steps=10, eval_every=1000, lr=3e-3, dropout=0.0, checkpoint_minutes=60, max_steps=500)
    with pytest.warns(UserWarning, match="near-duplicates"):
        model = checkpoint.load(train(config))
    # the training lengths are spread evenly over 29–39, so p(total length) cannot pick the loop
    assert set(model.length_histogram) == set(range(29, 40))
    modes = []
    for seq in loop_family(8, random.Random(1)):
        cut = HEAD + len(MOTIF_A)
        template = seq[:cut] + "[2-10]" + seq[cut + LOOP:]
        modes.append(span_posterior(model, PROTEIN.parse_spec(template, model.max_len), seed=0).mode()[0])
    assert modes == [LOOP] * 8


@pytest.mark.parametrize("t_samples", [0, -1, 2.5, True])
def test_span_posterior_needs_at_least_one_time_per_candidate(bundled, t_samples):
    """t_samples=0 averaged nothing into NaN ('invalid multinomial distribution' when drawing, or an
    arbitrary mode); -1 and 2.5 failed inside torch."""
    spec = bundled.alphabet.parse_spec("MKV[1-3]GF", bundled.max_len)
    with pytest.raises(ValueError, match="t_samples .* must be a whole number ≥ 1"):
        span_posterior(bundled, spec, t_samples=t_samples)
