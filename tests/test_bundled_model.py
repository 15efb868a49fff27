"""The bundled ACYP checkpoint: present, loadable by default, documented, and doing its job."""
import re

from sedd import checkpoint
from sedd.design import Request, decode_rows, stream, templates_for
from sedd.sampler import last_frame

CARD = checkpoint.DEFAULT_CHECKPOINT / "README.md"


def test_default_checkpoint_loads_and_carries_its_evaluation(monkeypatch):
    monkeypatch.delenv("SEDD_CHECKPOINT", raising=False)
    model = checkpoint.load()
    assert model.alphabet.residues == "ACDEFGHIKLMNPQRSTVWY" and model.max_len >= 127
    assert min(model.length_histogram) >= 1 and max(model.length_histogram) <= model.max_len
    evaluation = model.meta["evaluation"]
    assert evaluation["elbo_nats_per_residue"] < evaluation["unigram_nats_per_residue"] - 0.5   # beats the unigram floor
    assert evaluation["elbo_stderr"] < 0.01
    assert (checkpoint.DEFAULT_CHECKPOINT / "model.safetensors").stat().st_size < 25 * 2**20
    card = CARD.read_text()
    assert f"{evaluation['elbo_nats_per_residue']:.3f}" in card


def test_bundled_model_infills_the_catalytic_motif_region_plausibly():
    """With the catalytic arginine loop masked, the family's motif comes back in most designs."""
    model = checkpoint.load()
    # human ACYP1 with the residues after "GKVQG" masked
    natural = "MAEGNTLISVDYEIFGKVQGVFFRKHTQAEGKKLGLVGWVQNTDRGTVQGQLQGPISKVRHMQEWLETRGSPKSHIDKANFNNEKVILKLDYSDFQIVK"
    template = natural[:20] + "____" + natural[24:]
    templates = templates_for(model, template=template, num_samples=16, seed=0)
    frame = last_frame(stream(model, Request(templates, steps=64, seed=0)))
    designs = decode_rows(model, frame, [len(natural)] * 16)
    assert all(d[:20] == natural[:20] and d[24:] == natural[24:] for d in designs)
    with_motif = sum(bool(re.search("G.VQG[VI].[FY]R", d)) for d in designs)
    assert with_motif >= 12, designs          # measured: 16 of 16 (a random model: ~0)


def test_the_readmes_score_example_is_what_sedd_score_prints(capsys, monkeypatch):
    from pathlib import Path

    from sedd import score

    monkeypatch.delenv("SEDD_CHECKPOINT", raising=False)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    command = re.search(r"^python -m sedd\.score --sequence ([A-Z]+)$", readme, re.M)
    assert score.main(["--sequence", command[1]]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "\n".join(printed) in readme and len(printed) == 2
