"""The studio's API as a demanding user drives it: odd inputs get a clear refusal at the right input,
outputs agree with what the API says of them, and downloads survive a busy server."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests
from studio_helpers import fasta_sequences, refused_inputs

import app

TEMPLATE = "MKV__GF_R____LLAGW__KDE"
TABLE_SCORE = app.TABLE_HEADERS.index("model score (nats/res)")
RAW = [TEMPLATE, 1, 16, 0, 1.0, "off", "", "sample", "tau-leaping", 1.0, 0]       # a raw call's inputs, in order


@pytest.mark.parametrize("temperature, got", [("1,5", "got '1,5'"), (None, "got None"), ("warm", "got 'warm'")])
def test_a_temperature_that_is_not_a_number_is_named_as_sent(client, temperature, got):
    """Not "got nan", a value the user never typed."""
    with pytest.raises(Exception) as e:
        client.predict(TEMPLATE, 1, 16, 1, temperature, api_name="/generate")
    assert f"temperature must be a number from 0.1 to 2.0; {got}" in str(e.value)
    assert "nan" not in str(e.value)


@pytest.mark.parametrize("index, field, message", [
    (1, "num_samples", "number of designs must be a whole number, 1 to 8; got True"),
    (4, "temperature", "temperature must be a number from 0.1 to 2.0; got True"),
    (9, "top_p", "top-p must be a number from 0.05 to 1 (1 = off); got True"),
    (11, "particles", "particles per design must be a whole number, 1 to 64; got True"),
])
def test_a_json_true_is_not_the_number_one(served, index, field, message):
    """An argument in the wrong place (a flag where a count goes) is refused, as the seed refuses it,
    not run as one design, temperature 1 or one particle."""
    data = RAW + [1]
    data[index] = True
    r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=30)
    [(refused_field, reason)] = refused_inputs(r)
    assert refused_field == field and message in reason


def test_excluding_every_residue_is_refused_at_the_exclude_input(served):
    """The exclusion is at fault, whatever the template: the page shows the reason under Exclude residues."""
    data = list(RAW)
    data[6] = "acdefghiklmnpqrstvwy"
    r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=30)
    [(field, reason)] = refused_inputs(r)
    assert field == "exclude" and "every residue of the alphabet" in reason


def test_a_run_folder_removed_by_another_prune_does_not_lose_this_runs_downloads(model, tmp_path, monkeypatch):
    """Two runs end at once: the other run's prune removes an old folder after this one listed it."""
    out = tmp_path / "out"
    cb = app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=out, max_output_bytes=1)
    list(cb.generate(TEMPLATE, 1, 16, 1))                  # an earlier run's folder
    [earlier] = list(out.iterdir())
    listed = Path.iterdir

    def listed_then_removed(self):
        entries = list(listed(self))
        if self == out:
            shutil.rmtree(earlier)                          # the concurrent prune, right after the listing
        return iter(entries)

    monkeypatch.setattr(Path, "iterdir", listed_then_removed)
    *_, final = cb.generate(TEMPLATE, 2, 16, 2)
    assert sorted(Path(f).name for f in final[7]) == ["designs.fasta", "settings.json", "trajectory.json"]
    assert all(Path(f).is_file() for f in final[7])


def test_the_api_says_in_what_order_the_fasta_comes(client):
    """The FASTA is in drawing order (the CLI's, which settings.json reproduces); the table ranks."""
    doc = " ".join(app.StudioCallbacks.generate.__doc__.split())
    assert "the FASTA text of the designs in the order they were drawn" in doc
    assert "FASTA text of the designs, ranked" not in doc
    final = client.predict(TEMPLATE, 4, 16, 5, api_name="/generate")
    names = [line[1:] for line in final[0].splitlines() if line.startswith(">")]
    assert names == ["design_1", "design_2", "design_3", "design_4"]
    table = final[4]["data"]
    by_name = {row[1]: row[-1] for row in table}
    assert [by_name[n] for n in names] == fasta_sequences(final[0])
    scores = [row[TABLE_SCORE] for row in table]
    assert scores == sorted(scores)                          # ranked by model score, lower first

