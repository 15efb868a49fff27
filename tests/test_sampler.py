import pytest
import torch

from sedd.alphabet import PROTEIN
from sedd.sampler import run, sample

M = PROTEIN.mask_id


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
