"""Stop, and how a run's designs are ranked: a run stopped while it denoises, folds, scores or loads
ESMFold's weights ends at once and shows its own designs in every output, and the table's heading says
what the ranking covers. The studio's callbacks with a tiny score model and a tiny random ESMFold."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from studio_helpers import download, download_kinds, fasta_sequences, tiny_esmfold

import app
from sedd import studio
from sedd.fold import ESMFoldBackend

TEMPLATE = "MKV__GF_R____LLAGW__KDE"
FOLD = "ESMFold (local)"


@pytest.fixture
def cb(model, tmp_path):
    backends = {FOLD: ESMFoldBackend(model=tiny_esmfold(), device="cpu"), "off": None}
    return app.StudioCallbacks(model, backends, min_interval=0.0, output_root=tmp_path)


def stopped_at(cb, shown: str, seed: int, fold: str = FOLD) -> tuple:
    """A 4-design run (folded unless ``fold`` is "off") whose page presses Stop as soon as its frame or
    status shows ``shown`` (a fold it names stops at its next layer, a score it names finishes: the run
    stops before the next); its last output."""
    request = SimpleNamespace(session_hash="user")
    presses = cb._stops.get("user", 0)
    outputs = []
    for out in cb.generate(TEMPLATE, 4, 16, seed, 1.0, fold, stop_epoch=presses, request=request):
        outputs.append(out)
        if any(isinstance(v, str) and shown in v for v in out[1:3]) and cb._stops.get("user", 0) == presses:
            cb.stop(presses + 1, request)
    assert cb._stops["user"] == presses + 1, f"the run never showed {shown!r}"
    return outputs[-1]


def column(table: list[list], header: str) -> list:
    return [row[app.TABLE_HEADERS.index(header)] for row in table]


# ---- Stop while folding: every output shows the stopped run's designs ------------------------------------
def test_stop_while_folding_shows_the_stopped_runs_designs_in_every_output(cb):
    """After a finished run, a second run stopped while it folded left the FASTA box with its designs
    but the table empty under a heading "ranked by model score", a blank structure panel and no
    downloads: the designs were drawn, but only the FASTA box had them. And the design folding when
    Stop came is not folded: the fold stops within a layer (it used to finish, a minute a design on a CPU)."""
    *_, first = cb.generate(TEMPLATE, 4, 16, 1, 1.0, FOLD)
    fasta, _frame, status, seed, table, structure, _plot, files, ranked = stopped_at(cb, "Folding design 3 of 4", 2)
    assert seed == 2 and "(step" not in fasta
    sequences = fasta_sequences(fasta)
    assert len(sequences) == 4 and sequences != fasta_sequences(first[0])
    assert sorted(column(table, "sequence")) == sorted(sequences), "the table is not the stopped run's designs"
    assert column(table, "design") == [d.name for d in ranked]
    assert column(table, "fold") == ["ok", "ok", "stopped", "stopped"]      # the folded ones ranked first
    assert {d.name for d in ranked[:2]} == {"design_1", "design_2"}
    assert "Stopped" in status and "2 not folded, 4 without a model score" in status
    assert f"{ranked[0].name}: mean pLDDT" in structure
    assert download_kinds(files) == ["design_1.pdb", "design_2.pdb", "designs.fasta", "settings.json", "trajectory.json"]
    assert download(files, "designs.fasta").read_text() == fasta
    assert "ranked by mean pLDDT" in cb.heading(ranked)
    unfolded, _ = cb._show(ranked[-1], "plddt")
    assert "stopped before it was folded" in unfolded


def test_stop_before_the_first_fold_lists_the_designs_in_drawing_order(cb):
    """Nothing folded or scored: the heading must not claim a ranking by model score."""
    fasta, _frame, status, _seed, table, structure, plot, files, ranked = stopped_at(cb, 'data-step="16"', 3)
    assert column(table, "design") == ["design_1", "design_2", "design_3", "design_4"]
    assert column(table, "sequence") == fasta_sequences(fasta)
    assert set(column(table, "fold")) == {"stopped"} and plot is None
    assert "No structure for design_1. The run was stopped before it was folded." in structure
    assert "ranked by drawing order" in cb.heading(ranked) and "model score" not in cb.heading(ranked)
    assert download_kinds(files) == ["designs.fasta", "settings.json", "trajectory.json"]


def test_stop_while_scoring_keeps_the_folds_and_names_the_unscored(cb):
    *_, status, _seed, table, _structure, _plot, _files, _ranked = stopped_at(cb, "Model score of design 3 of 4", 4)
    assert set(column(table, "fold")) == {"ok"}
    assert sum(score is None for score in column(table, "model score (nats/res)")) == 1
    assert "1 without a model score" in status and "not folded" not in status


def test_the_status_names_the_design_being_scored(cb, monkeypatch):
    """It named the one scored before: "Model score of design 1 of 4…" while design 2 was scored."""
    shown, scoring = [], []
    real = studio.score.elbo_score

    def elbo_score(model, tokens, seed):
        scoring.append(shown[-1])
        return real(model, tokens, seed=seed)

    monkeypatch.setattr(studio.score, "elbo_score", elbo_score)
    for out in cb.generate(TEMPLATE, 4, 16, 6, 1.0, "off"):
        shown.append(out[2])
    assert [f"Model score of design {k} of 4…" in status for k, status in enumerate(scoring, start=1)] == [True] * 4


def test_stop_while_denoising_still_shows_only_stopped(cb):
    """No designs yet: the page keeps the partial frame and its "(step n)" FASTA, as before; the
    structure panel no longer says that structures are coming (it kept "once the designs are folded")."""
    skip = app.gr.skip()
    assert stopped_at(cb, "Denoising…", 5) == (skip, skip, app.STOPPED_HTML, skip, skip, app.NO_STRUCTURE_YET) + (skip,) * 3


# ---- the heading over the table ------------------------------------------------------------------------
def test_a_heading_over_a_partly_scored_run_says_how_many_the_ranking_covers(cb):
    """Stopped while scoring, the heading said "ranked by model score" with two designs of four scored
    (the one the status names finishes) and the other two listed after them, unranked."""
    *_, ranked = stopped_at(cb, "Model score of design 2 of 4", 7, fold="off")
    heading = cb.heading(ranked)
    assert "ranked by model score" in heading and "only 2 of 4 scored, the rest after them in drawing order" in heading
    assert [d.name for d in ranked[2:]] == ["design_3", "design_4"]
    *_, done = cb.generate(TEMPLATE, 4, 16, 7, 1.0, "off")
    assert "only" not in cb.heading(done[-1])


def test_a_heading_over_a_partly_folded_run_says_how_many_were_folded(cb):
    *_, ranked = stopped_at(cb, "Folding design 3 of 4", 8)
    assert "ranked by mean pLDDT" in cb.heading(ranked) and "only 2 of 4 folded" in cb.heading(ranked)


def test_the_heading_over_an_empty_table_claims_no_ranking(cb):
    """A fresh page, or a run stopped before its first design, read "Designs, ranked by model score"
    above an empty table."""
    heading = cb.heading([])
    assert "none yet" in heading and "ranked by model score (" not in heading
    assert "mean pLDDT when folded, else by model score" in heading


# ---- a Stop with no run to stop, and one while ESMFold's weights load -------------------------------------
def test_a_stop_while_only_a_score_runs_leaves_the_finished_runs_status(model, tmp_path):
    """A finished run, then a Score, then Stop: the status said "Stopped: the run was cancelled." and
    the finished run's status (seed, notes) was gone, though nothing was cancelled: a Stop does not end
    a score, and the score's result appeared. A Stop while a run waits or runs still says Stopped."""
    from gradio_client import Client
    scoring, release = threading.Event(), threading.Event()
    cb = app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path)
    score = cb.score

    def held_score(sequence):
        scoring.set()
        release.wait(timeout=60)
        return score(sequence)

    cb.score = held_score
    demo = app.build_demo(cb, "off")
    url = app.serve(demo)
    try:
        client = Client(url, verbose=False)
        page = SimpleNamespace(session_hash=client.session_hash)
        job = client.submit("MKVLAGGF", api_name="/score")
        assert scoring.wait(timeout=60)
        assert cb.stop(1, page) == app.gr.skip()             # the status is left as it is
        release.set()
        assert job.result(timeout=60)["sequence"] == "MKVLAGGF"
        run = client.submit("_" * 100, 2, 1024, 1, api_name="/generate")
        deadline = time.monotonic() + 60
        while not cb.runs_pending(client.session_hash):
            assert time.monotonic() < deadline, "the run never reached the queue"
            time.sleep(0.01)
        assert cb.stop(3, page) == app.STOPPED_HTML
        run.result(timeout=120)
    finally:
        release.set()
        demo.close()


class SlowLoad(ESMFoldBackend):
    """ESMFold whose weights take until ``gate`` opens to load (minutes, the first time, in a Space)."""

    def __init__(self):
        super().__init__(device="cpu")
        self.gate = threading.Event()

    def _load(self):
        if self._model is None:
            self.gate.wait(timeout=30)             # never hangs a broken test for good
            self._model = self._prepare(tiny_esmfold())
        return self._model


def test_a_stop_while_the_weights_load_ends_the_run_at_once(model, tmp_path):
    """Stop during "Folding design 1 of 4 … (loading its weights first)" held the run, and its slot in
    the queue, until the load ended (about 25 s of retries without network, minutes for real weights);
    the page said Stopped while the server went on. The load itself goes on, for the next run."""
    backend = SlowLoad()
    cb = app.StudioCallbacks(model, {FOLD: backend, "off": None}, min_interval=0.0, output_root=tmp_path)
    try:
        *_, table, _structure, _plot, _files, ranked = stopped_at(cb, "(loading its weights first)", 9)
        assert column(table, "fold") == ["stopped"] * 4 and not backend.loaded
    finally:
        backend.gate.set()
    deadline = time.monotonic() + 30
    while not backend.loaded:
        assert time.monotonic() < deadline, "the load did not go on in the background"
        time.sleep(0.05)
    *_, done = cb.generate(TEMPLATE, 2, 16, 10, 1.0, FOLD)
    assert all(d.fold is not None for d in done[-1])


def test_the_heading_says_why_a_nearest_other_design_cell_is_blank(cb):
    """A design whose span lengths no other design drew has no one to compare with, position by
    position: its cell was blank without a word."""
    *_, ranked = list(cb.generate("MKV[3-6]GFRE", 4, 16, 2, 1.0, "off"))[-1]
    lengths = [d.span_lengths for d in ranked]
    lonely = [d for d in ranked if lengths.count(d.span_lengths) == 1]
    assert lonely and all(d.nearest_identity is None for d in lonely)
    assert "blank for a design whose span lengths no other design drew" in cb.heading(ranked)
    *_, plain = list(cb.generate(TEMPLATE, 4, 16, 7, 1.0, "off"))[-1]
    assert "blank" not in cb.heading(plain)
    # the same layout, nothing designed in it (a span drawn at length 0): it said "no other design drew"
    *_, empty = list(cb.generate("MKV[0-0]GF", 3, 16, 1, 1.0, "off"))[-1]
    assert all(d.nearest_identity is None for d in empty)
    assert cb.heading(empty).endswith("it is blank for a design with no designed position.")


def test_a_stop_count_that_is_no_count_is_ignored_and_the_counts_kept_are_bounded(cb, monkeypatch):
    """Stop is callable over HTTP: 'x' or [1] for the count raised, a 500 with a traceback in the log.
    And every session that ever pressed Stop kept its count for the server's life."""
    page = SimpleNamespace(session_hash="user")
    for junk in ("x", [1], {"a": 1}, "1e5", "9" * 5000, float("inf")):
        assert cb.stop(junk, page) == app.gr.skip()
    assert "user" not in cb._stops
    monkeypatch.setattr(app, "STATE_SESSIONS", 3)
    for n in range(5):
        cb.stop(1, SimpleNamespace(session_hash=f"s{n}"))
    cb.stop(2, SimpleNamespace(session_hash="s2"))                  # pressed again: the most recent
    cb.stop(1, SimpleNamespace(session_hash="s5"))
    assert list(cb._stops) == ["s4", "s2", "s5"] and cb._stops["s2"] == 2
