"""The three sampler strategies: shared guarantees, confidence ordering, remasking, top-p, caching."""
import itertools
import math

import pytest
import torch
from conftest import profile_family

from sedd.alphabet import PROTEIN
from sedd.sampler import STRATEGIES, nucleus, run, sample

M = PROTEIN.mask_id
V = PROTEIN.size


class ProfileNetwork(torch.nn.Module):
    """A synthetic family's ideal context-free model: logits = log profile at every position."""

    def __init__(self, profile: torch.Tensor):
        super().__init__()
        self.log_profile = torch.nn.Parameter(profile.log().float(), requires_grad=False)    # [L, V]

    def forward(self, x):
        return self.log_profile[:x.shape[1]].expand(x.shape[0], -1, -1).clone()


def template(text):
    return list(PROTEIN.parse_template(text, 128).tokens)


@pytest.fixture
def family_net():
    _, profile = profile_family(10, 48, seed=1, sharpness=2.0)
    return ProfileNetwork(profile)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fixed_residues_kept_no_mask_left_same_seed_same_output(family_net, strategy):
    tpls = [template("MKV" + "_" * 20 + "GFLR" + "_" * 21), template("_" * 48), template("A" * 10 + "_" * 30)]
    frames = list(sample(family_net, tpls, mask_id=M, steps=12, seed=5, strategy=strategy))
    for frame in frames:
        for row, tpl in zip(frame.tokens, tpls):
            fixed = torch.tensor(tpl) != M
            assert torch.equal(row[:len(tpl)][fixed], torch.tensor(tpl)[fixed])
            assert (row[len(tpl):] == PROTEIN.pad_id).all()
    last = frames[-1]
    assert last.done and last.step == 12
    for row, tpl in zip(last.tokens, tpls):
        assert (row[:len(tpl)] < V).all()                                  # residues only: no MASK, PAD or X
    again = run(family_net, tpls, mask_id=M, steps=12, seed=5, strategy=strategy)
    other = run(family_net, tpls, mask_id=M, steps=12, seed=6, strategy=strategy)
    assert torch.equal(last.tokens, again.tokens)
    assert not torch.equal(last.tokens, other.tokens)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_allowed_sets_are_respected(family_net, strategy):
    tpls = [template("_" * 48)] * 4
    allowed = torch.zeros(4, 48, V, dtype=torch.bool)
    allowed[:, :, :5] = True                            # only A C D E F anywhere
    allowed[:, 7] = False
    allowed[:, 7, PROTEIN.residues.index("W")] = True   # position 8 must be W
    last = run(family_net, tpls, mask_id=M, steps=10, seed=0, strategy=strategy, allowed=allowed)
    assert allowed.gather(-1, last.tokens.unsqueeze(-1)).all()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_caching_equals_no_caching_at_batch_one(tiny_model, strategy):
    tpl = [template("GVQG" + "_" * 50 + "R")]
    cached = list(sample(tiny_model, tpl, mask_id=M, steps=80, seed=11, strategy=strategy, eta=2.0))
    uncached = list(sample(tiny_model, tpl, mask_id=M, steps=80, seed=11, strategy=strategy, eta=2.0, use_cache=False))
    for a, b in zip(cached, uncached):
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.remasked, b.remasked)
    assert cached[-1].nfe < uncached[-1].nfe == 80


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_top_p_one_is_plain_sampling_and_tiny_top_p_is_greedy(family_net, strategy):
    tpls = [template("_" * 48)] * 3
    plain = run(family_net, tpls, mask_id=M, steps=8, seed=2, strategy=strategy)
    assert torch.equal(run(family_net, tpls, mask_id=M, steps=8, seed=2, strategy=strategy, top_p=1.0).tokens,
                       plain.tokens)
    greedy = run(family_net, tpls, mask_id=M, steps=8, seed=2, strategy=strategy, top_p=1e-6).tokens
    assert (greedy == family_net.log_profile.argmax(-1)).all()


def test_nucleus_keeps_the_smallest_top_set_reaching_p():
    p = torch.tensor([[0.1, 0.5, 0.05, 0.3, 0.05]], dtype=torch.float64)
    torch.testing.assert_close(nucleus(p, 0.8), torch.tensor([[0, 0.625, 0, 0.375, 0]], dtype=torch.float64))
    torch.testing.assert_close(nucleus(p, 0.81), torch.tensor([[0.1, 0.5, 0, 0.3, 0]], dtype=torch.float64) / 0.9)
    torch.testing.assert_close(nucleus(p, 0.3), torch.tensor([[0, 1.0, 0, 0, 0]], dtype=torch.float64))
    assert nucleus(p, 1.0) is p


class OneSureNetwork(torch.nn.Module):
    """Uniform over residues everywhere except position ``sure``, which is certain to be residue 3."""

    def __init__(self, sure: int):
        super().__init__()
        self.sure, self.w = sure, torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.zeros(*x.shape, V)
        logits[:, self.sure] = -30.0
        logits[:, self.sure, 3] = 30.0
        return logits


def test_confidence_reveals_the_most_confident_position_first():
    for sure in (0, 17, 29):
        frames = list(sample(OneSureNetwork(sure), [[M] * 30] * 4, mask_id=M, steps=30, seed=sure, strategy="confidence",
                             order_noise=0.0))
        first = frames[1].changed
        assert first.sum(-1).tolist() == [1] * 4                     # 30 steps, 30 positions: one per step
        assert first[:, sure].all() and (frames[1].tokens[:, sure] == 3).all()


def test_planned_strategies_leave_the_scheduled_number_masked(family_net):
    for strategy in ("confidence", "remask"):
        frames = list(sample(family_net, [[M] * 40] * 2, mask_id=M, steps=7, seed=0, strategy=strategy))
        for frame in frames[1:]:
            assert ((frame.tokens == M).sum(-1) == round(40 * frame.t)).all()


def remask_frames(net, tpls, **kw):
    return list(sample(net, tpls, mask_id=M, strategy="remask", **kw))


def test_remasking_revises_designed_residues_only_and_shows_them_masked(tiny_model):
    tpls = [template("MKVAG" + "_" * 30 + "GFLRW" + "_" * 10), template("_" * 45)]
    frames = remask_frames(tiny_model, tpls, steps=20, seed=0, eta=3.0, remask_budget=1.0)
    remasked = torch.stack([f.remasked for f in frames]).any(0)
    assert remasked.any(), "the knob is high enough that something must be remasked"
    designed = torch.tensor(tpls[0]) == M
    assert not remasked[0, :len(tpls[0])][~designed].any()                # fixed residues never remasked
    for prev, cur in itertools.pairwise(frames):
        assert (cur.tokens[cur.remasked] == M).all() and (prev.tokens[cur.remasked] != M).all()
        assert torch.equal(cur.changed, (prev.tokens == M) & (cur.tokens != M))
        assert not (cur.changed & cur.remasked).any()


@pytest.mark.parametrize("budget", [0.0, 0.1, 0.13, 0.5])      # 0.13 · 40 = 5.2: at most 5 remasks
def test_remasking_stays_within_its_budget_and_terminates(tiny_model, budget):
    n = 40
    frames = remask_frames(tiny_model, [[M] * n] * 3, steps=25, seed=1, eta=5.0, remask_budget=budget)
    per_row = torch.stack([f.remasked for f in frames]).sum((0, 2))
    assert (per_row <= math.floor(budget * n)).all()
    if budget > 0:
        assert (per_row == math.floor(budget * n)).any(), "η = 5 spends the budget"
    last = frames[-1]
    assert len(frames) == 26 and last.done and not (last.tokens == M).any()
    assert last.nfe <= 25 * 3


def test_remask_without_budget_is_confidence(tiny_model):
    tpls = [template("_" * 30)] * 2
    a = run(tiny_model, tpls, mask_id=M, steps=10, seed=3, strategy="remask", remask_budget=0.0)
    b = run(tiny_model, tpls, mask_id=M, steps=10, seed=3, strategy="confidence")
    assert torch.equal(a.tokens, b.tokens)


@pytest.mark.parametrize("noise", [0.0, 2.0, 5.0])
def test_remask_at_eta_zero_is_confidence_whatever_the_order_noise(family_net, noise):
    tpls = [template("_" * 48)] * 4
    frames = remask_frames(family_net, tpls, steps=16, seed=2, eta=0.0, order_noise=noise)
    assert not any(f.remasked.any() for f in frames)
    confidence = run(family_net, tpls, mask_id=M, steps=16, seed=2, strategy="confidence", order_noise=noise)
    assert torch.equal(frames[-1].tokens, confidence.tokens)


def test_a_larger_eta_remasks_more(family_net):
    def remasks(eta):
        return sum(int(torch.stack([f.remasked for f in remask_frames(family_net, [[M] * 48] * 4, steps=16,
                                                                        seed=seed, eta=eta)]).sum())
                   for seed in range(3))

    few, some, budget = remasks(0.05), remasks(0.2), remasks(1.0)
    assert few < some < budget == 3 * 4 * math.floor(0.5 * 48)      # η = 1 spends the whole default budget


def test_bad_sampler_settings_are_refused_with_the_allowed_values(tiny_model):
    with pytest.raises(ValueError, match="tau-leaping, confidence, remask"):
        run(tiny_model, [[M] * 5], mask_id=M, strategy="greedy")
    with pytest.raises(ValueError, match="top_p"):
        run(tiny_model, [[M] * 5], mask_id=M, top_p=0.0)
    with pytest.raises(ValueError, match="top_p"):
        run(tiny_model, [[M] * 5], mask_id=M, top_p=1.5)
    with pytest.raises(ValueError, match="eta"):
        run(tiny_model, [[M] * 5], mask_id=M, strategy="remask", eta=-1.0)


def test_cli_sampler_and_top_p_are_used_and_recorded(capsys, tiny_checkpoint):
    import json

    from sedd.sample import main

    def cli(*extra):
        code = main(["--checkpoint", str(tiny_checkpoint), "--length", "30", "--num-samples", "2", "--steps", "16",
                     "--seed", "4", "--json", *extra])
        out, err = capsys.readouterr()
        return code, (json.loads(out) if code == 0 else None), err

    _, default, _ = cli()
    assert default["sampler"] == "tau-leaping" and default["top_p"] == 1.0
    _, remask, _ = cli("--sampler", "remask", "--top-p", "0.9")
    assert remask["sampler"] == "remask" and remask["top_p"] == 0.9
    assert remask["sequences"] != default["sequences"] and remask["nfe_per_sample"] <= 16
    assert cli("--sampler", "remask", "--top-p", "0.9")[1]["sequences"] == remask["sequences"]
    with pytest.raises(SystemExit) as refused:
        cli("--top-p", "0")
    assert refused.value.code == 2 and "argument --top-p: '0' is not a number above 0 and at most 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli("--sampler", "greedy")
    assert "invalid choice: 'greedy'" in capsys.readouterr().err
