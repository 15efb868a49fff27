"""Review of the output side: what folding, the evaluation report and the family HMM give a user on
inputs the other tests do not try (non-canonical residues, NaN confidences, a DNA or foreign HMM,
report names with spaces, folds that fail, the fold device). Tiny models, no network."""
from __future__ import annotations

import json
import re
from urllib.parse import unquote

import pytest
import torch
from conftest import profile_family, write_fasta
from studio_helpers import tiny_esmfold

from sedd import checkpoint, fold, hmm, metrics, render
from sedd import evaluate as ev
from sedd.alphabet import PROTEIN
from sedd.data import read_fasta
from sedd.report import summary, write_report


def run_cli(capsys, *args) -> tuple[int, str, str]:
    try:
        code = ev.main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fasta(tmp_path):
    path = tmp_path / "family.fasta"
    write_fasta(path, profile_family(6, 40)[0])
    return path


@pytest.fixture
def no_elbo(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the ELBO ran before a bad --hmm was refused")
    monkeypatch.setattr(ev, "elbo_to_precision", forbidden)


# ---- folding: what a backend accepts and returns -----------------------------------------------------
@pytest.mark.parametrize("sequence, char, position", [
    ("MKVXAG", "X", 4),        # ESMFold folded it as "unknown" and left it out of the PDB
    ("MKVBZ", "B", 4),
    ("MKV*", "*", 4),          # transformers raised a bare ValueError, not a FoldError
    ("MK VA", " ", 3),
    ("MKÅV", "Å", 3),
])
def test_a_residue_outside_the_20_is_a_fold_error_naming_it_and_its_position(esmfold, sequence, char, position):
    with pytest.raises(fold.FoldError) as e:
        esmfold.fold([sequence])
    assert e.value.reason == "failed"
    assert f"{char!r} at position {position}" in str(e.value) and "ACDEFGHIKLMNPQRSTVWY" in str(e.value)


def test_the_atlas_backend_never_sends_a_non_canonical_sequence():
    class Session:
        calls: list[str] = []

        def post(self, url, data, timeout):
            self.calls.append(data)
            raise AssertionError("posted")
    session = Session()
    with pytest.raises(fold.FoldError, match="'X' at position 3"):
        fold.ESMAtlasBackend(session=session).fold(["MKX"])
    assert session.calls == []


def test_one_unfoldable_sample_does_not_stop_the_others(monkeypatch):
    from transformers import EsmForProteinFolding

    monkeypatch.setattr(EsmForProteinFolding, "from_pretrained", lambda name: tiny_esmfold())
    result = metrics.fold_metrics(["MKVLAG", "MKV*AG", "GGSAW"], device="cpu")
    assert result["folded"] == 2 and [r["sequence"] for r in result["per_sample"]] == ["MKVLAG", "GGSAW"]
    [failure] = result["failures"]
    assert failure["sequence"] == "MKV*AG" and "'*' at position 4" in failure["error"]
    assert 0.0 <= result["mean_plddt"] <= 100.0


def test_non_finite_confidences_are_a_fold_error_not_a_result(monkeypatch):
    backend = fold.ESMFoldBackend(model=tiny_esmfold(), device="cpu")
    real = backend._model.infer

    def overflowed(sequence):                     # what an fp16 overflow on a GPU gives
        output = real(sequence)
        output["plddt"] = torch.full_like(output["plddt"], float("nan"))
        return output
    monkeypatch.setattr(backend._model, "infer", overflowed)
    with pytest.raises(fold.FoldError, match="non-finite confidences") as e:
        backend.fold(["MKVLAG"])
    assert e.value.reason == "failed" and backend.cached("MKVLAG") is None


@pytest.mark.parametrize("value", [float("nan"), -0.5])
def test_a_confidence_outside_the_bands_is_drawn_in_the_lowest_band(value):
    very_low = render.PLDDT_BANDS[-1][1]
    assert render.plddt_color(value) == very_low
    page = render.viewer_page("ATOM      1  CA  ALA A   1       0.000   0.000   0.000  1.00 50.00           C\nEND\n",
                              [value], [True])
    assert very_low in page


def test_folding_runs_on_the_device_evaluate_was_given(monkeypatch, tiny_checkpoint, fasta, capsys):
    made = []

    class Backend:
        def __init__(self, device=None, **kwargs):
            made.append(device)

        def fold(self, sequences):
            return [fold.FoldResult(s, "", [80.0] * len(s), 80.0, 0.5) for s in sequences]
    monkeypatch.setattr(fold, "ESMFoldBackend", Backend)
    assert metrics.fold_metrics(["MKV"], device="cuda:1")["folded"] == 1 and made == ["cuda:1"]

    # the command line hands --device to the fold (the score model itself stays on this CPU here)
    asked = []
    real_load = checkpoint.load
    monkeypatch.setattr(checkpoint, "check_device", lambda device: torch.device("cpu"))
    monkeypatch.setattr(checkpoint, "load", lambda name, device="cpu": real_load(name, device="cpu"))
    monkeypatch.setattr(ev, "fold_metrics", lambda seqs, progress=False, **kw: asked.append(kw) or {"error": "x"})
    for device in (["--device", "cuda:1"], ["--device", "cpu"], []):
        code, out, err = run_cli(capsys, "--checkpoint", tiny_checkpoint, "--data", fasta, "--max-seqs", 2,
                                 "--target-stderr", 0.5, "--samples", 2, "--reference", fasta, "--fold", *device, "--json")
        assert code == 0, err
    # given: there (on the CPU too, as a non-finite fold's advice asks); not given: the first GPU there is
    assert asked == [{"device": "cuda:1"}, {"device": "cpu"}, {"device": None}]


# ---- the family HMM: refused before the slow work --------------------------------------------------
def _dna_hmm(path):
    from pyhmmer import easel, plan7

    alphabet = easel.Alphabet.dna()
    rows = [easel.TextSequence(name=f"s{i}".encode(), sequence="ACGTACGTAGCTAGCTAGCA") for i in range(3)]
    msa = easel.TextMSA(name=b"dna", sequences=rows).digitize(alphabet)
    model, _, _ = plan7.Builder(alphabet).build_msa(msa, plan7.Background(alphabet))
    with open(path, "wb") as f:
        model.write(f)
    return path


def test_a_dna_hmm_is_refused_when_read(tmp_path):
    path = _dna_hmm(tmp_path / "dna.hmm")
    with pytest.raises(ValueError, match=r"dna.hmm is a DNA profile HMM; the family metric scores proteins"):
        hmm.load(path)


def test_evaluate_refuses_a_dna_hmm_before_the_elbo(tiny_checkpoint, fasta, tmp_path, no_elbo, capsys):
    path = _dna_hmm(tmp_path / "dna.hmm")
    code, out, err = run_cli(capsys, "--checkpoint", tiny_checkpoint, "--data", fasta, "--samples", 2,
                             "--reference", fasta, "--hmm", path)
    assert code == 2 and out == "" and "is a DNA profile HMM" in err


def test_evaluate_refuses_an_hmm_of_another_family_before_the_elbo(tiny_checkpoint, fasta, no_elbo, capsys):
    bundled = checkpoint.DEFAULT_CHECKPOINT / hmm.HMM_NAME          # acylphosphatase; the data is random profiles
    code, out, err = run_cli(capsys, "--checkpoint", tiny_checkpoint, "--data", fasta, "--samples", 2,
                             "--reference", fasta, "--hmm", bundled)
    assert code == 2 and out == ""
    assert re.search(r"^error: held-out naturals score a median .* bits against this HMM: it is not their family$",
                     err.strip())


# ---- the Markdown report ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded():
    """The bundled model's recorded evaluation and its samples."""
    bundled = checkpoint.DEFAULT_CHECKPOINT
    evaluation = json.loads((bundled / "config.json").read_text())["evaluation"]
    samples = [PROTEIN.decode(t) for t in read_fasta(bundled / "eval" / "report_samples.fasta", PROTEIN).tokens]
    return evaluation, samples


def _links(markdown: str) -> list[str]:
    from markdown_it import MarkdownIt

    page = MarkdownIt("commonmark").enable("table").render(markdown)
    return re.findall(r'(?:href|src)="([^"]+)"', page)


def test_report_links_reach_their_files_whatever_the_report_is_named(recorded, tmp_path):
    evaluation, samples = recorded
    path = tmp_path / "eval run (v2).md"
    written = write_report(path, evaluation, samples[:8], evaluation["samples"]["nearest_identities"][:8])
    links = _links(path.read_text())
    assert sorted(links) == sorted(["eval%20run%20%28v2%29_samples.fasta", "eval%20run%20%28v2%29_identity.png"])
    for link in links:
        assert (tmp_path / unquote(link)).is_file()
    assert set(written) == {"samples_fasta", "identity_histogram", "report"}


def test_report_and_summary_say_how_many_folds_failed_and_why(recorded, tmp_path):
    evaluation, samples = recorded
    why = "ESMFold (local): folding 300 residues failed (RuntimeError: a | b)."
    result = {**evaluation, "fold": {"mean_plddt": 71.5, "mean_ptm": 0.61, "folded": 2,
                                     "per_sample": [], "failures": [{"sequence": "MKV", "error": why}] * 3}}
    write_report(tmp_path / "r.md", result, samples[:4], [0.5] * 4)
    [row] = [line for line in (tmp_path / "r.md").read_text().splitlines() if "ESMFold" in line]
    assert "2 folded, 3 failed; first: ESMFold (local): folding 300 residues failed" in row
    assert row.count("|") - row.count("\\|") == 3                  # still two cells: the message's | is escaped
    assert "71.5 / 0.610" in row
    assert "2 folded, 3 failed; first: " + why in summary(result)

    none = {**result, "fold": {"mean_plddt": None, "mean_ptm": None, "folded": 0, "per_sample": [],
                               "failures": [{"sequence": "MKV", "error": "too long"}]}}
    assert "0 folded, 1 failed; first: too long" in summary(none)

