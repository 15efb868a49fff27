"""Review of the sampling side: corner cases of the sampler, the span-length posterior and the schedule
that used to give wrong designs or fail inside torch instead of saying what was wrong."""
import json
import math
from pathlib import Path

import pytest
import torch

from sedd import checkpoint
from sedd.alphabet import PROTEIN
from sedd.design import allowed_tensor
from sedd.sampler import run, sample
from sedd.schedule import LogLinearSchedule
from sedd.spans import span_posterior

M = PROTEIN.mask_id
V = PROTEIN.size
BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints" / "acyp"


@pytest.fixture(scope="module")
def bundled():
    return checkpoint.load(BUNDLED)


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


@pytest.mark.parametrize("t_samples", [0, -1, 2.5, True])
def test_span_posterior_needs_at_least_one_time_per_candidate(bundled, t_samples):
    """t_samples=0 averaged nothing into NaN ('invalid multinomial distribution' when drawing, or an
    arbitrary mode); -1 and 2.5 failed inside torch."""
    spec = bundled.alphabet.parse_spec("MKV[1-3]GF", bundled.max_len)
    with pytest.raises(ValueError, match="t_samples .* must be a whole number ≥ 1"):
        span_posterior(bundled, spec, t_samples=t_samples)


@pytest.mark.parametrize("eps", [1.0, 1.5, -0.1, math.nan])
def test_a_schedule_eps_outside_0_to_1_is_refused(eps):
    """eps = 1 masked nothing: the stay probability was 0/0 = NaN, tau-leaping revealed nothing and
    designs came back all MASK."""
    with pytest.raises(ValueError, match="eps must be a number from 0 up to"):
        LogLinearSchedule.from_dict({"kind": "loglinear", "eps": eps})


def test_a_checkpoint_with_a_bad_eps_is_refused_when_loaded(tmp_path):
    target = tmp_path / "bad"
    target.mkdir()
    for f in BUNDLED.iterdir():
        if f.is_file() and f.name != "config.json":
            (target / f.name).symlink_to(f)
    config = json.loads((BUNDLED / "config.json").read_text())
    config["schedule"]["eps"] = 1.0
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="invalid section.*eps must be a number from 0 up to"):
        checkpoint.load(target)


def test_eps_zero_and_the_default_still_work():
    assert LogLinearSchedule(eps=0.0).mask_prob(torch.tensor(1.0)) == 1.0
    assert LogLinearSchedule.from_dict(LogLinearSchedule().to_dict()) == LogLinearSchedule()
