"""The sampler: fixed residues kept, caching, temperature, eval mode; and the corner cases that used to
give wrong designs or fail inside torch instead of saying what was wrong."""
import math

import pytest
import torch

from sedd.alphabet import PROTEIN
from sedd.design import allowed_tensor
from sedd.sampler import run, sample

M = PROTEIN.mask_id
V = PROTEIN.size


def template(text):
    return list(PROTEIN.parse_template(text, 128).tokens)


def final(model, templates, **kw):
    return run(model, templates, mask_id=M, **kw)


def test_fixed_residues_never_change_and_output_is_residues_only(tiny_model):
    tpls = [template("MKV__GF_R____"), template("A" * 5 + "_" * 30), template("_" * 50)]
    frames = list(sample(tiny_model, tpls, mask_id=M, steps=64, seed=3))
    for frame in frames:
        for row, tpl in zip(frame.tokens, tpls):
            fixed = torch.tensor(tpl) != M
            assert torch.equal(row[:len(tpl)][fixed], torch.tensor(tpl)[fixed])
            assert (row[len(tpl):] == PROTEIN.pad_id).all()          # padding stays padding
    last = frames[-1]
    assert last.done and last.step == 64
    for row, tpl in zip(last.tokens, tpls):
        assert (row[:len(tpl)] < PROTEIN.size).all()              # no MASK, PAD or X inside a sequence


def test_unmasking_is_monotone_and_changed_marks_reveals(tiny_model):
    frames = list(sample(tiny_model, [template("_" * 40)] * 2, mask_id=M, steps=32, seed=0))
    for prev, cur in zip(frames, frames[1:]):
        was_masked = prev.tokens == M
        assert not ((cur.tokens == M) & ~was_masked).any()             # a revealed residue never re-masks
        assert torch.equal(cur.changed, was_masked & (cur.tokens != M))
        unchanged = ~cur.changed
        assert torch.equal(cur.tokens[unchanged], prev.tokens[unchanged])


def test_same_seed_same_output_different_seed_differs(tiny_model):
    tpls = [template("_" * 60)] * 3
    a = final(tiny_model, tpls, steps=50, seed=7).tokens
    b = final(tiny_model, tpls, steps=50, seed=7).tokens
    c = final(tiny_model, tpls, steps=50, seed=8).tokens
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_caching_bounds_network_evaluations_at_1024_steps(tiny_model):
    tpls = [template("MKV" + "_" * 40), template("_" * 25)]
    last = final(tiny_model, tpls, steps=1024, seed=0)
    # a row is recomputed only after it changed, so evaluations ≤ masked positions + 1 per row
    assert last.nfe <= (40 + 1) + (25 + 1)


def test_no_cache_evaluates_every_step(tiny_model):
    last = final(tiny_model, [template("_" * 20)] * 3, steps=40, seed=0, use_cache=False)
    assert last.nfe == 40 * 3


def test_cached_and_uncached_identical_at_batch_one(tiny_model):
    tpl = [template("GVQG" + "_" * 60 + "R")]
    cached = final(tiny_model, tpl, steps=200, seed=11)
    uncached = final(tiny_model, tpl, steps=200, seed=11, use_cache=False)
    assert torch.equal(cached.tokens, uncached.tokens)
    assert cached.nfe < uncached.nfe


def test_no_mask_returns_template_unchanged_without_network(tiny_model):
    tpl = [template("MKVAGFLR")]
    last = final(tiny_model, tpl, steps=10, seed=0)
    assert PROTEIN.decode(last.tokens[0]) == "MKVAGFLR" and last.nfe == 0


def test_temperature_sharpens_toward_the_argmax(tiny_model):
    tpl = [template("_" * 60)] * 4
    logits = tiny_model(torch.full((1, 60), M))[0]
    greedy = logits.argmax(-1)
    cold = final(tiny_model, tpl, steps=1, seed=0, temperature=1e-3).tokens
    assert (cold == greedy).float().mean() > 0.99   # one step: every position from the all-mask prediction
    with pytest.raises(ValueError, match="temperature"):
        final(tiny_model, tpl, steps=4, temperature=0.0)
    with pytest.raises(ValueError, match="steps"):
        final(tiny_model, tpl, steps=0)


def test_float64_two_stage_draw_is_unbiased():
    """Empirical frequencies of a single-position model match its distribution (the tail included)."""
    probs = torch.tensor([0.5, 0.3, 0.15, 0.04, 0.009, 0.001] + [0.0] * 14, dtype=torch.float64)

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return probs.log().float().expand(*x.shape, 20).clone()

    last = final(Fixed(), [[M]] * 20000, steps=1, seed=0)
    counts = torch.bincount(last.tokens[:, 0], minlength=20).double() / 20000
    assert (counts[6:] == 0).all()
    torch.testing.assert_close(counts[:6], probs[:6], atol=0.01, rtol=0.0)
    assert counts[5] > 0   # the 0.1 % tail is still sampled


def test_a_network_without_parameters_runs_on_the_cpu():
    """The device is the network's own; one without parameters (a fixed function) runs on the CPU."""
    class Uniform(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(*x.shape, PROTEIN.size)

    for strategy in ("tau-leaping", "confidence", "remask"):
        last = final(Uniform(), [template("MK___"), template("_")], steps=3, seed=0, strategy=strategy)
        assert last.done and (last.tokens[0, :5] < PROTEIN.size).all() and last.tokens[1, 0] < PROTEIN.size


@pytest.mark.parametrize("particles", [1, 4])
def test_the_network_runs_in_eval_mode_and_gets_its_mode_back_however_the_run_ends(tiny_model, particles):
    """A caller that stops reading frames (the studio's Stop, a closed stream) closes the generator:
    a model that was training must be training again, including when it stops at the first frame."""
    allowed = torch.ones(2, 30, M, dtype=torch.bool)
    allowed[:, 3, list(PROTEIN.residue_ids("FY"))] = False                # a restriction: particles really run
    kw = dict(mask_id=M, steps=8, seed=0, particles=particles, allowed=allowed)
    try:
        for stop_after in (1, 3):
            tiny_model.train()
            frames = sample(tiny_model, [template("_" * 30)] * 2, **kw)
            for _ in range(stop_after):
                next(frames)
                assert not tiny_model.training
            frames.close()
            assert tiny_model.training
        tiny_model.train()
        last = run(tiny_model, [template("_" * 30)] * 2, **kw)
        assert tiny_model.training and last.done
    finally:
        tiny_model.eval()


# ---- a tiny temperature ------------------------------------------------------------------------------------
class FixedLogits(torch.nn.Module):
    """The same logits at every position: 10 for residue 0 (A), 5 for residue 1 (C), 0 for the rest."""

    def forward(self, x):
        logits = torch.zeros(*x.shape, V)
        logits[..., 0], logits[..., 1] = 10.0, 5.0
        return logits


@pytest.mark.parametrize("temperature", [1e-320, 1e-310])
def test_a_tiny_temperature_is_greedy_within_the_allowed_sets(temperature):
    """logits / T overflowed to inf for a subnormal T, softmax gave NaN, and the inverse-CDF draw fell on
    the last residue (Y) at every designed position, a position restricted to [C] included."""
    template = [M] * 6
    allowed = torch.ones(1, 6, V, dtype=torch.bool)
    allowed[0, 2] = False
    allowed[0, 2, 1] = True                                                  # [C]
    allowed[0, 4, 0] = False                                                 # [^A]
    last = run(FixedLogits(), [template], mask_id=M, steps=3, seed=0, temperature=temperature, allowed=allowed)
    assert last.tokens[0].tolist() == [0, 0, 1, 0, 1, 0]                     # A, or C where A is barred


@pytest.mark.parametrize("kw", [dict(), dict(strategy="confidence"), dict(strategy="remask")])
def test_a_tiny_temperature_draws_the_argmax_without_allowed_sets(kw):
    last = run(FixedLogits(), [[M] * 5, [2, M, M]], mask_id=M, steps=2, seed=1, temperature=1e-320, **kw)
    assert last.tokens.tolist() == [[0] * 5, [2, 0, 0, M + 1, M + 1]]


def test_particles_at_a_tiny_temperature_have_no_nan_weight():
    """The allowed mass log Z was inf − inf = NaN at such a temperature, and with it every weight."""
    allowed = torch.ones(2, 4, V, dtype=torch.bool)
    allowed[:, 1, 0] = False                                                 # [^A]: Z → 0 as T → 0
    allowed[:, 3, 1] = False                                                 # [^C]: Z → 1
    frames = list(sample(FixedLogits(), [[M] * 4] * 2, mask_id=M, steps=4, seed=0, temperature=1e-320,
                         allowed=allowed, particles=4))
    last = frames[-1]
    assert last.tokens.tolist() == [[0, 1, 0, 0]] * 2
    for frame in frames:
        assert not torch.isnan(frame.constraint_log_prob).any()
    assert (last.constraint_log_prob == -math.inf).all()                    # P([^A] met) underflows to 0


def test_particle_frames_say_how_the_shown_row_differs_from_the_last_frames():
    """Frames show each design's heaviest particle, which can change from step to step: ``changed`` and
    ``remasked`` compare the shown rows (documented), so a display highlights what it shows changing."""
    class ContextDependent(torch.nn.Module):       # random logits, a function of the whole batch's tokens
        def forward(self, x):
            return 3 * torch.randn(*x.shape, V, generator=torch.Generator().manual_seed(int(x.sum())))
    allowed = torch.ones(2, 12, V, dtype=torch.bool)
    allowed[:, 2, list(PROTEIN.residue_ids("ACDEFGHIKLM"))] = False
    allowed[:, 7, list(PROTEIN.residue_ids("NPQRSTVWY"))] = False
    frames = list(sample(ContextDependent(), [[M] * 12] * 2, mask_id=M, steps=16, seed=0, allowed=allowed, particles=8))
    for before, frame in zip(frames, frames[1:]):
        assert torch.equal(frame.changed, (frame.tokens != before.tokens) & (frame.tokens != M))
        assert torch.equal(frame.remasked, (before.tokens != M) & (frame.tokens == M))
    assert any(frame.remasked.any() for frame in frames), "no step showed another particle: the case is untested"


def test_normal_temperatures_draw_what_they_drew(bundled):
    """The overflow-proof tempering is the same distribution: a fixed seed's designs (and particle weights)
    at T = 0.7 on the bundled model, pinned from before the change."""
    tpl = bundled.alphabet.parse_template("MKV____GF__R[KR]__", bundled.max_len)
    kw = dict(mask_id=M, steps=8, seed=3, temperature=0.7, allowed=allowed_tensor([tpl, tpl], V))
    last = run(bundled.model, [tpl.tokens] * 2, **kw)
    assert [bundled.alphabet.decode(row.tolist()) for row in last.tokens] == ["MKVVFRCGFDFRRVE", "MKVEARAGFTERRDI"]
    last = run(bundled.model, [tpl.tokens] * 2, particles=4, **kw)
    assert [bundled.alphabet.decode(row.tolist()) for row in last.tokens] == ["MKVFVEEGFDIRRDA", "MKVLDLQGFILRKTT"]
    # the network runs in float32, whose last digits differ between CPUs (a CI machine gave 4e-7 relative):
    # a changed distribution would move these by far more than 1e-5
    torch.testing.assert_close(last.constraint_log_prob, torch.tensor([-2.243908739653463, -2.545456270146369],
                                                                      dtype=torch.float64), rtol=1e-5, atol=1e-5)


# ---- arguments refused with what is allowed ---------------------------------------------------------------
@pytest.mark.parametrize("kw,name", [(dict(steps=2.5), "steps"), (dict(steps=True), "steps"), (dict(seed=1.5), "seed"),
                                     (dict(seed="7"), "seed"), (dict(particles=2.5), "particles")])
def test_steps_seed_and_particles_must_be_whole_numbers(kw, name):
    """steps=2.5 failed in torch.linspace with a page of overloads; seed=1.5 quietly ran as seed 1."""
    with pytest.raises(ValueError, match=f"{name} must be a whole number, got"):
        run(FixedLogits(), [[M] * 3], mask_id=M, **kw)


def test_whole_floats_are_the_same_numbers():
    a = run(FixedLogits(), [[M] * 8], mask_id=M, steps=4, seed=5, temperature=50.0)
    b = run(FixedLogits(), [[M] * 8], mask_id=M, steps=4.0, seed=5.0, temperature=50.0)
    assert torch.equal(a.tokens, b.tokens) and b.step == 4


@pytest.mark.parametrize("knob", ["eta", "remask_budget", "order_noise"])
def test_infinite_remask_knobs_are_refused(knob):
    """remask_budget=inf became a negative budget (no remasking at all); eta or noise = inf made NaN scores."""
    with pytest.raises(ValueError, match="must be finite numbers ≥ 0"):
        run(FixedLogits(), [[M] * 3], mask_id=M, strategy="remask", **{knob: math.inf})


@pytest.mark.parametrize("templates,says", [
    ([], "templates is empty"),
    ([[0, 25, M]], r"template 1 has token id 25 at position 2; token ids are residues 0 … 19, MASK 20"),
    ([[M], [M, -1]], "template 2 has token id -1 at position 2"),
    (torch.tensor([0, M, M]), "got a 1-d tensor"),
    (torch.tensor([[0.0, M, M]]), "got torch.float32 values"),
    ([[0.5, M]], "got torch.float32 values"),
    ("MKV", "token-id lists"),
])
def test_bad_templates_are_refused_saying_what_is_allowed(templates, says):
    """An empty list failed with 'max() arg is an empty sequence', an id out of range with the embedding's
    'index out of range in self', a 1-d tensor with 'not enough values to unpack'."""
    with pytest.raises(ValueError, match=says):
        run(FixedLogits(), templates, mask_id=M, steps=2)


def test_tensor_templates_of_any_integer_type_still_run_and_are_not_modified():
    x = torch.tensor([[0, M, M], [M, 3, M + 1]], dtype=torch.int32)
    before = x.clone()
    last = run(FixedLogits(), x, mask_id=M, steps=2, seed=0)
    assert torch.equal(x, before)
    assert last.tokens.tolist() == [[0, 0, 0], [0, 3, M + 1]]


def test_allowed_must_be_a_bool_tensor():
    """A 0/1 integer mask failed inside masked_fill ('only supports boolean masks')."""
    with pytest.raises(ValueError, match="allowed must be a bool tensor"):
        run(FixedLogits(), [[M] * 3], mask_id=M, allowed=torch.ones(1, 3, V, dtype=torch.long))


def test_infinite_temperature_huge_step_counts_and_non_numbers_are_refused(bundled):
    """At temperature inf a barred residue's logit was NaN, and every restricted position came out Y;
    10**9 steps built an 8 GB time grid; top_p "0.9" died in a bare TypeError."""
    from sedd.design import Request, plan_designs, stream
    plan = plan_designs(bundled, template="MK[^Y][^Y]GF", num_samples=2, seed=0)
    for options, said in ((dict(temperature=math.inf), "temperature must be a finite number"),
                          (dict(steps=10**9), "steps must be between 1 and 100,000"),
                          (dict(top_p="0.9"), "top_p must be a number"),
                          (dict(temperature="1"), "temperature must be a number")):
        with pytest.raises(ValueError, match=said):
            list(stream(bundled, Request(plan.templates, **(dict(steps=4, temperature=1.0, seed=0) | options))))
    for frame in stream(bundled, Request(plan.templates, steps=4, temperature=1e6, seed=0)):
        pass                                    # a huge finite temperature still obeys the bars
    assert all(bundled.alphabet.decode(row)[2:4].count("Y") == 0 for row in frame.tokens.tolist())
