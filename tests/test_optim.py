"""Optimizers of training: AdamW groups as before, Muon on the hidden matrices only, state round trips."""
import pytest
import torch

from sedd.model import ScoreNetwork, preset
from sedd.optim import Optimizers, make_optimizer


def tiny() -> ScoreNetwork:
    torch.manual_seed(0)
    return ScoreNetwork(preset("tiny", vocab_size=20, dropout=0.0))


def step(model, opt) -> None:
    x = torch.randint(0, 22, (4, 16))
    model(x).logsumexp(-1).mean().backward()
    opt.step()
    opt.zero_grad()


def test_adamw_decays_matrices_but_not_embeddings_biases_or_norms():
    model = tiny()
    opt = make_optimizer(model, "adamw", lr=1e-3, weight_decay=0.05)
    assert isinstance(opt, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in opt.param_groups[0]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 0.05 and opt.param_groups[1]["weight_decay"] == 0.0
    assert "blocks.0.attn.qkv.weight" in decayed and "head.weight" in decayed
    assert not any("embed" in n or n.endswith("bias") or "ln" in n for n in decayed)


def test_muon_takes_the_block_matrices_and_adamw_the_rest():
    model = tiny()
    opt = make_optimizer(model, "muon", lr=1e-3, weight_decay=0.05)
    assert isinstance(opt, Optimizers)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in opt.optimizers["muon"].param_groups for p in g["params"]}
    adamw = {names[id(p)] for g in opt.optimizers["adamw"].param_groups for p in g["params"]}
    assert muon | adamw == set(names.values()) and not muon & adamw
    assert muon == {n for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2}
    assert {"embed.weight", "head.weight", "head.bias"} <= adamw
    for group in opt.param_groups:                     # the LR schedule sets every group alike
        group["lr"] = 5e-4
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    step(model, opt)
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in muon)


def test_muon_state_round_trips_and_a_different_optimizer_is_refused():
    model = tiny()
    opt = make_optimizer(model, "muon", lr=1e-3, weight_decay=0.05)
    step(model, opt)
    state = opt.state_dict()
    twin = make_optimizer(model, "muon", lr=1e-3, weight_decay=0.05)
    twin.load_state_dict(state)
    buf = opt.optimizers["muon"].state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(twin.optimizers["muon"].state_dict()["state"][0]["momentum_buffer"], buf)
    with pytest.raises(ValueError, match=r"optimizer state holds \['adamw'\] but this run uses \['adamw', 'muon'\]"):
        twin.load_state_dict({"adamw": state["adamw"]})
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'; choose one of adamw, muon"):
        make_optimizer(model, "sgd", lr=1e-3, weight_decay=0.0)
