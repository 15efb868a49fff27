"""Folding backends: a tiny random ESMFold (real transformers code path) and a fake Atlas web service;
what they accept (the 20 residues, nothing else) and return (finite confidences, or a FoldError)."""
from __future__ import annotations

import threading
import time

import pytest
import requests
import torch
from studio_helpers import save_tiny_esmfold, tiny_esmfold

from sedd import fold, metrics
from sedd.fold import (
    ATLAS_MAX_LENGTH,
    ESMAtlasBackend,
    ESMFoldBackend,
    FoldError,
    pdb_ca_bfactors,
    rescale_pdb_bfactors,
    set_precision,
)

SEQ = "MKVLAGGGSTRDEWY"



def test_esmfold_result_is_on_the_0_100_scale(esmfold):
    [res] = esmfold.fold([SEQ])
    assert res.sequence == SEQ and len(res.plddt) == len(SEQ)
    assert all(0.0 <= p <= 100.0 for p in res.plddt)
    assert max(res.plddt) > 1.0, "pLDDT must be rescaled from transformers' 0–1"
    assert res.mean_plddt == pytest.approx(sum(res.plddt) / len(SEQ))
    assert 0.0 <= res.ptm <= 1.0
    # The PDB's B-factor column carries the same 0–100 values, one Cα per residue.
    assert pdb_ca_bfactors(res.pdb) == pytest.approx(res.plddt, abs=0.006)


def test_esmfold_runs_fp32_on_cpu(esmfold):
    assert {p.dtype for p in esmfold._model.parameters()} == {torch.float32}


def test_gpu_precision_is_fp16_stem_and_chunked_trunk():
    model = set_precision(tiny_esmfold(), gpu=True, chunk_size=32)
    assert {p.dtype for p in model.esm.parameters()} == {torch.float16}
    assert {p.dtype for p in model.trunk.parameters()} == {torch.float32}
    assert model.trunk.chunk_size == 32


def test_fold_cache_by_sequence(esmfold, monkeypatch):
    calls = []
    real = esmfold._model.infer
    monkeypatch.setattr(esmfold._model, "infer", lambda s: calls.append(s) or real(s))
    a = esmfold.fold(["ACDEFGHIK"])[0]
    b, c = esmfold.fold(["acdefghik", "ACDEFGHIK"])
    assert calls == ["ACDEFGHIK"] and a is b is c


def test_weights_load_lazily_and_once(tmp_path, monkeypatch):
    from transformers import EsmForProteinFolding
    save_tiny_esmfold(tmp_path / "esmfold")
    loads = []
    real = EsmForProteinFolding.from_pretrained
    monkeypatch.setattr(EsmForProteinFolding, "from_pretrained",
                        lambda name, **kw: loads.append(name) or real(name, **kw))
    backend = ESMFoldBackend(str(tmp_path / "esmfold"), device="cpu")
    assert loads == [] and backend._model is None
    backend.fold(["MKV", "GGSA"])
    backend.fold(["WWW"])
    assert loads == [str(tmp_path / "esmfold")]


def test_missing_weights_name_the_model_and_reason(tmp_path, monkeypatch):
    from transformers import EsmForProteinFolding
    backend = ESMFoldBackend(str(tmp_path / "no-such-model"), device="cpu")
    with pytest.raises(FoldError, match="no-such-model.*not available") as e:
        backend.fold([SEQ])
    assert e.value.reason == "no_weights"
    assert "hf download facebook/esmfold_v1" in str(e.value) and "backend" not in str(e.value)   # sedd.evaluate has no other
    # the next request fails fast with the same message instead of retrying the download
    calls = []

    def unreachable(name, **kw):
        calls.append(name)
        raise OSError("We couldn't connect to the Hub")

    monkeypatch.setattr(EsmForProteinFolding, "from_pretrained", unreachable)
    with pytest.raises(FoldError, match="no-such-model.*not available"):
        backend.fold(["MKV"])
    assert calls == []
    backend.retry_after_s = 0.0          # once the pause is over, it tries again
    with pytest.raises(FoldError, match="no-such-model.*not available.*the Hub cannot serve it: HFValidationError"):
        backend.fold(["MKV"])
    assert len(calls) == 1


@pytest.mark.parametrize("error, words", [
    (RuntimeError("Error(s) in loading state_dict for EsmForProteinFolding"), "could not be loaded .*state_dict"),
    (torch.cuda.OutOfMemoryError("CUDA out of memory"), "too little free memory for the weights"),
])
def test_weights_that_fail_to_load_are_remembered_not_loaded_again_for_each_design(monkeypatch, error, words):
    """Only a missing repo was remembered: a damaged file or a GPU too small for the weights came back
    as "folding failed unexpectedly", and each of the run's designs loaded gigabytes again."""
    loads = []

    def broken(name):
        loads.append(name)
        raise error

    monkeypatch.setattr(fold, "load_esmfold", broken)
    backend = ESMFoldBackend("some/esmfold", device="cpu")
    with pytest.raises(FoldError, match=words) as e:
        backend.fold([SEQ])
    assert e.value.reason == "no_weights" and e.value.fails_every_sequence
    with pytest.raises(FoldError, match=words):
        backend.fold(["MKV"])
    assert loads == ["some/esmfold"]


def test_a_fold_keeps_only_what_its_pdb_and_confidences_need(esmfold, monkeypatch):
    """Every output of ``infer`` was kept, the pair outputs too (1.3 GB at 1,024 residues), and still on
    the GPU after the lock was released for the next session's fold. The PDB is the same."""
    full = esmfold._model.infer("WQHMKVLAGW")
    kept = []
    real = esmfold._result
    monkeypatch.setattr(esmfold, "_result", lambda seq, model, output: kept.append(set(output)) or real(seq, model, output))
    [result] = esmfold.fold(["WQHMKVLAGW"])
    assert kept == [set(fold.PDB_OUTPUTS)] and len(full) > len(fold.PDB_OUTPUTS)
    full["plddt"] = full["plddt"] * 100
    assert result.pdb == esmfold._model.output_to_pdb(full)[0]


def test_a_local_copy_without_its_weights_says_what_it_lacks(tmp_path, monkeypatch):
    """``--esmfold DIR``: the reason is transformers' (no weights file in it), not the Hub's view of a path."""
    from huggingface_hub import HfApi
    save_tiny_esmfold(tmp_path / "esmfold")
    for weights in (tmp_path / "esmfold").glob("*.safetensors"):
        weights.unlink()
    monkeypatch.setattr(HfApi, "model_info", lambda *a, **k: pytest.fail("a local directory is not asked of the Hub"))
    with pytest.raises(FoldError, match="esmfold' are not available here.*model.safetensors") as e:
        ESMFoldBackend(str(tmp_path / "esmfold"), device="cpu").fold([SEQ])
    assert "Hub cannot serve" not in str(e.value)


def hub_loads(monkeypatch, hub_error: Exception | None) -> list[dict]:
    """``from_pretrained`` finds nothing in the cache; the Hub answers, or fails with ``hub_error``.
    The list records each load's keyword arguments."""
    from huggingface_hub import HfApi
    from transformers import EsmForProteinFolding
    loads = []

    def from_pretrained(name, **kw):
        loads.append(kw)
        if kw.get("local_files_only"):
            raise OSError(f"{name} is not in the cache")
        return tiny_esmfold()

    def model_info(self, repo_id, timeout=None):
        assert timeout is not None, "an unreachable Hub must not hold the fold up"
        if hub_error is not None:
            raise hub_error

    monkeypatch.setattr(EsmForProteinFolding, "from_pretrained", from_pretrained)
    monkeypatch.setattr(HfApi, "model_info", model_info)
    return loads


def test_an_unreachable_hub_fails_at_once_without_the_download_retries(monkeypatch):
    loads = hub_loads(monkeypatch, ConnectionError("[Errno -2] Name or service not known"))
    with pytest.raises(FoldError, match="not in the Hugging Face cache, and the Hub cannot serve it: "
                                        "ConnectionError: .Errno -2. Name or service") as e:
        ESMFoldBackend(device="cpu").fold([SEQ])
    assert e.value.reason == "no_weights" and "hf download facebook/esmfold_v1" in str(e.value)
    assert loads == [{"local_files_only": True}], "the download (and its ~25 s of retries) must not start"


def test_weights_missing_from_the_cache_are_downloaded_when_the_hub_answers(monkeypatch):
    loads = hub_loads(monkeypatch, None)
    [result] = ESMFoldBackend(device="cpu").fold([SEQ])
    assert result.sequence == SEQ
    assert loads == [{"local_files_only": True}, {}]


def test_too_long_names_the_limit(esmfold):
    short = ESMFoldBackend(model=esmfold._model, device="cpu", max_length=10)
    with pytest.raises(FoldError, match="1 to 10 residues; this design has 15") as e:
        short.fold([SEQ])
    assert e.value.reason == "too_long"


def test_out_of_memory_is_reported_and_the_next_fold_works(monkeypatch):
    backend = ESMFoldBackend(model=tiny_esmfold(), device="cpu")
    real = backend._model.infer
    failures = iter([torch.cuda.OutOfMemoryError("CUDA out of memory")])

    def flaky(seq):
        for err in failures:
            raise err
        return real(seq)

    monkeypatch.setattr(backend._model, "infer", flaky)
    with pytest.raises(FoldError, match="ran out of memory") as e:
        backend.fold([SEQ])
    assert e.value.reason == "out_of_memory"
    assert backend.fold([SEQ])[0].sequence == SEQ


def test_a_cpu_out_of_memory_is_a_fold_error(monkeypatch):
    backend = ESMFoldBackend(model=tiny_esmfold(), device="cpu")

    def no_memory(seq):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(backend._model, "infer", no_memory)
    with pytest.raises(FoldError, match=f"folding {len(SEQ)} residues failed .*can't allocate memory") as e:
        backend.fold([SEQ])
    assert e.value.reason == "failed"
    monkeypatch.setattr(backend._model, "infer", lambda seq: (_ for _ in ()).throw(RuntimeError()))   # no message
    with pytest.raises(FoldError, match=r"failed \(RuntimeError: \)"):
        backend.fold([SEQ + "A"])


# ---- ESM Atlas API, against a fake session ------------------------------------------------------

def _pdb(seq: str, bfactor: float) -> str:
    return "".join(f"ATOM  {i:5d}  CA  ALA A{i:4d}    {0.0:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00{bfactor:6.2f}           C\n"
                   for i in range(1, len(seq) + 1)) + "END\n"


class FakeSession:
    def __init__(self, answer=None, error=None, status=200):
        self.answer, self.error, self.status, self.calls = answer, error, status, []

    def post(self, url, data, timeout):
        self.calls.append(data)
        if self.error:
            raise self.error
        return type("Response", (), {"status_code": self.status, "text": self.answer})()


def test_atlas_rescales_0_1_bfactors_to_0_100():
    backend = ESMAtlasBackend(session=FakeSession(_pdb(SEQ, 0.83)))
    [res] = backend.fold([SEQ])
    assert res.plddt == pytest.approx([83.0] * len(SEQ)) and res.ptm is None
    assert pdb_ca_bfactors(res.pdb) == pytest.approx([83.0] * len(SEQ))


@pytest.mark.parametrize("error, reason, words", [
    (requests.exceptions.ConnectionError("no route"), "no_network", "cannot be reached"),
    (requests.exceptions.SSLError("bad cert"), "no_network", "certificate"),
    (requests.exceptions.ChunkedEncodingError("cut off"), "failed", "the request failed"),
    (requests.exceptions.ConnectTimeout("no answer to connect"), "no_network", "cannot be reached"),
    # reached but slow (a long design): this design failed, not the service for every design
    (requests.exceptions.ReadTimeout("read timed out"), "failed", "did not answer within 60 s for 15 residues"),
])
def test_atlas_network_failures(error, reason, words):
    with pytest.raises(FoldError, match=words) as e:
        ESMAtlasBackend(session=FakeSession(error=error)).fold([SEQ])
    assert e.value.reason == reason and "ESM Atlas API" in str(e.value)


def test_two_atlas_read_timeouts_in_a_row_fail_the_service_not_each_design():
    """A read timeout fails its design only; but a service that takes connections and never answers
    cost every design of a run the full timeout. The second in a row ends the run's folding."""
    session = FakeSession(error=requests.exceptions.ReadTimeout("read timed out"))
    backend = ESMAtlasBackend(session=session)
    reasons = []
    for sequence in (SEQ, "MKVLAG"):
        with pytest.raises(FoldError) as e:
            backend.fold([sequence])
        reasons.append((e.value.reason, e.value.fails_every_sequence))
    assert reasons == [("failed", False), ("no_network", True)]
    assert "nor for the design before" in str(e.value)
    session.error, session.answer = None, _pdb("MKVW", 80.0)
    backend.fold(["MKVW"])                              # an answer resets the count
    session.error = requests.exceptions.ReadTimeout("read timed out")
    with pytest.raises(FoldError) as e:
        backend.fold(["MKVWW"])
    assert e.value.reason == "failed"


@pytest.mark.parametrize("page", ["", "<html>Down for maintenance</html>"])
def test_an_atlas_answer_that_is_not_a_structure_is_a_fold_error(page):
    with pytest.raises(FoldError, match="the answer is not a PDB structure") as e:
        ESMAtlasBackend(session=FakeSession(page)).fold([SEQ])
    assert e.value.reason == "failed"


def test_atlas_http_error_and_length_limit():
    with pytest.raises(FoldError, match="HTTP 503"):
        ESMAtlasBackend(session=FakeSession("busy", status=503)).fold([SEQ])
    session = FakeSession(_pdb("A" * 401, 90.0))
    with pytest.raises(FoldError, match=f"1 to {ATLAS_MAX_LENGTH} residues") as e:
        ESMAtlasBackend(session=session).fold(["A" * 401])
    assert e.value.reason == "too_long" and session.calls == []


def test_rescale_pdb_bfactors_keeps_every_atom():
    pdb = _pdb("AAA", 0.5)
    out = rescale_pdb_bfactors(pdb, 100.0)
    assert pdb_ca_bfactors(out) == [50.0, 50.0, 50.0]
    atoms = [line[:54] for line in out.splitlines() if line.startswith("ATOM")]
    assert atoms == [line[:54] for line in pdb.splitlines() if line.startswith("ATOM")]   # names, residues, coordinates


def test_bfactors_of_calpha_atoms_only_from_lines_ending_after_the_bfactor():
    pdb = "".join(f"ATOM  {2 * i - 1:5d}  CA  ALA A{i:4d}    {1.0:8.3f}{2.0:8.3f}{3.0:8.3f}  1.00{10.0 * i:6.2f}\n"
                  f"ATOM  {2 * i:5d}  CB  ALA A{i:4d}    {1.5:8.3f}{2.0:8.3f}{3.0:8.3f}  1.00{99.0:6.2f}\n"
                  for i in range(1, 4))
    assert pdb_ca_bfactors(pdb) == [10.0, 20.0, 30.0]


# ---- what a backend accepts and returns ------------------------------------------------------------------
@pytest.mark.parametrize("sequence, char, position", [
    ("MKVXAG", "X", 4),        # ESMFold folded it as "unknown" and left it out of the PDB
    ("MKVBZ", "B", 4),
    ("MKV*", "*", 4),          # transformers raised a bare ValueError, not a FoldError
    ("MK VA", " ", 3),
    ("MKÅV", "Å", 3),
])
def test_a_residue_outside_the_20_is_a_fold_error_naming_it_and_its_position(esmfold, sequence, char, position):
    with pytest.raises(FoldError) as e:
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
    with pytest.raises(FoldError, match="'X' at position 3"):
        ESMAtlasBackend(session=session).fold(["MKX"])
    assert session.calls == []


def test_one_unfoldable_sample_does_not_stop_the_others(monkeypatch):
    from transformers import EsmForProteinFolding

    monkeypatch.setattr(EsmForProteinFolding, "from_pretrained", lambda name, **kw: tiny_esmfold())
    result = metrics.fold_metrics(["MKVLAG", "MKV*AG", "GGSAW"], device="cpu")
    assert result["folded"] == 2 and [r["sequence"] for r in result["per_sample"]] == ["MKVLAG", "GGSAW"]
    [failure] = result["failures"]
    assert failure["sequence"] == "MKV*AG" and "'*' at position 4" in failure["error"]
    assert 0.0 <= result["mean_plddt"] <= 100.0


def test_non_finite_confidences_are_a_fold_error_not_a_result(monkeypatch):
    backend = ESMFoldBackend(model=tiny_esmfold(), device="cpu")
    real = backend._model.infer

    def overflowed(sequence):                     # what an fp16 overflow on a GPU gives
        output = real(sequence)
        output["plddt"] = torch.full_like(output["plddt"], float("nan"))
        return output
    monkeypatch.setattr(backend._model, "infer", overflowed)
    with pytest.raises(FoldError, match="non-finite confidences") as e:
        backend.fold(["MKVLAG"])
    assert e.value.reason == "failed" and backend.cached("MKVLAG") is None


# ---- A fold can be stopped while it works ----------------------------------------------------------------
class Stop(Exception):
    pass


def test_a_check_that_raises_stops_an_esmfold_fold_between_its_layers_and_leaves_no_hook(esmfold):
    """A Stop pressed while a design folded ended the run only when the whole fold had finished (a
    minute a design for ESMFold on a CPU). ``check`` now runs before every layer and ends the fold there."""
    calls = []

    def check_after(n):
        def check():
            calls.append(1)
            if len(calls) > n:
                raise Stop
        return check
    esmfold.fold(["MKVLAGGF"], check=check_after(10**6))
    layers = len(calls)
    assert layers >= 3, "check must run between the layers of one fold, not once per fold"
    calls.clear()
    with pytest.raises(Stop):
        esmfold.fold(["MKVLAGGW"], check=check_after(1))
    assert len(calls) == 2, "the fold went on after check raised"
    assert esmfold.cached("MKVLAGGW") is None, "a stopped fold must not be cached as a result"
    hooks = [m for m in esmfold._model.modules() if m._forward_pre_hooks]
    assert hooks == [], "the checks must be removed after the fold"
    calls.clear()
    esmfold.fold(["MKVLAGGW"])
    assert calls == []


def test_a_check_that_raises_stops_waiting_for_another_sessions_fold(esmfold):
    """Two runs share the one ESMFold (--concurrency 2): a Stop while the other run's fold held it did
    nothing until that fold ended."""
    started, raised = time.monotonic(), []

    def check():
        if time.monotonic() - started > 0.2:
            raise Stop

    def stopped_run():
        try:
            esmfold.fold(["MKVLAGGY"], check=check)
        except Stop as e:
            raised.append(e)
    with esmfold._lock:                          # another session's fold
        waiting = threading.Thread(target=stopped_run, daemon=True)
        waiting.start()
        waiting.join(timeout=5)
        assert not waiting.is_alive() and raised, "the Stop waited for the other fold"
    assert esmfold.fold(["MKVLAGGY"], check=lambda: None)[0].sequence == "MKVLAGGY"


def test_a_check_that_raises_stops_waiting_for_the_atlas_answer():
    """The Atlas API can take up to its 60 s timeout to answer: a Stop ends the wait at once."""
    answered = threading.Event()

    class SlowSession(FakeSession):
        def post(self, url, data, timeout):
            answered.wait(timeout=30)
            return super().post(url, data, timeout)
    backend = ESMAtlasBackend(session=SlowSession(_pdb(SEQ, 0.83)))
    started = time.monotonic()

    def check():
        if time.monotonic() - started > 0.2:
            raise Stop
    with pytest.raises(Stop):
        backend.fold([SEQ], check=check)
    assert time.monotonic() - started < 5 and not answered.is_set()
    answered.set()
    assert backend.fold([SEQ], check=lambda: None)[0].mean_plddt == pytest.approx(83.0)
