"""Structure prediction for designs: ESMFold through ``transformers``, or the ESM Atlas web API (opt-in).

ESMFold (Lin et al. 2023) runs locally as ``EsmForProteinFolding`` (``facebook/esmfold_v1``), loaded
lazily, once, on the first fold. On a GPU the ESM-2 language-model stem runs in fp16 and the folding
trunk is chunked to bound memory; on a CPU everything stays fp32. fair-esm's ESMFold needs openfold
(a CUDA build, old torch), so it is not used.

transformers reports pLDDT on a 0–1 scale; every ``FoldResult`` (and the B-factor column of its PDB)
is on the usual 0–100 scale, so the 50/70/90 confidence bands apply as they do everywhere else.

Every failure a user can meet (no weights, no network, GPU out of memory, a sequence too long for
the backend or with a residue outside the 20 canonical ones, a fold with non-finite confidences) is
a ``FoldError`` whose message says which backend failed and why; ``reason`` names the case for code
and tests. Results are cached by sequence, so a design folded once is free after.

A fold can be stopped: ``fold(..., check=...)`` calls ``check`` while it works (ESMFold: before each of
its layers, and while it waits for another session's fold; the Atlas API: while the answer is
awaited), and what ``check`` raises (the studio's Stop) ends the fold there, without a result.
"""
from __future__ import annotations

import io
import math
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator, Iterator, Sequence

import torch

from .alphabet import PROTEIN_RESIDUES

ESMFOLD_MODEL = "facebook/esmfold_v1"
ATLAS_URL = "https://api.esmatlas.com/foldSequence/v1/pdb/"
ATLAS_MAX_LENGTH = 400          # the Atlas API refuses longer sequences
RESIDUES = PROTEIN_RESIDUES     # what a backend folds: ESMFold drops X (and B, Z, U, O) from its PDB
CA_ATOM = 1                     # index of Cα in the atom37 layout (N, CA, C, CB, O, …)


def check_foldable(alphabet) -> None:
    """ESMFold folds proteins: a model of another alphabet (RNA, DNA, text) is refused by name, before
    any design is drawn (its sequences would be folded as peptides, or each would fail on its own)."""
    if not alphabet.is_protein:
        raise ValueError(f"folding needs a protein model: ESMFold folds amino-acid sequences, and this model's "
                         f"residues are {alphabet.residues!r}; choose off")


@dataclass
class FoldResult:
    sequence: str
    pdb: str              # PDB text; B-factor column = each atom's pLDDT on 0–100 (ESMFold gives it per atom)
    plddt: list[float]    # per residue, 0–100
    mean_plddt: float     # 0–100, the mean over residues (their Cα atoms; fair-esm averages every atom)
    ptm: float | None     # predicted TM-score, 0–1, where the backend reports it
    backend: str = ""


class FoldError(RuntimeError):
    """A fold that could not be done; the message is written for the user.

    reason: ``"no_weights"``, ``"no_network"``, ``"out_of_memory"``, ``"too_long"`` or ``"failed"``.
    """

    def __init__(self, message: str, reason: str = "failed"):
        super().__init__(message)
        self.reason = reason

    @property
    def fails_every_sequence(self) -> bool:
        """No weights or no network: the next sequence would fail the same way, so stop asking."""
        return self.reason in ("no_weights", "no_network")


def in_background(work: Callable[[], object], poll_s: float = 0.1) -> Generator[None, None, object]:
    """Runs ``work()`` in a thread and yields every ``poll_s`` seconds while it runs, so that the caller
    can check for a Stop or stream a status; returns its result (or raises its exception). Closing the
    generator leaves the work, which cannot be interrupted, to finish in the background."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as e:       # noqa: BLE001 - handed to the waiting caller
            outcome["error"] = e
    worker = threading.Thread(target=run, name="sedd-background-work", daemon=True)
    worker.start()
    while True:
        worker.join(poll_s)
        if not worker.is_alive():
            break
        yield
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def finished_unless_stopped(work: Callable[[], object], check: Callable[[], None], poll_s: float = 0.1):
    """``work()``'s result (or its exception), computed in a thread while ``check`` is polled: whatever
    ``check`` raises ends the wait at once, and the work finishes in the background."""
    waiting = in_background(work, poll_s)
    while True:
        try:
            next(waiting)                   # the first call starts the work: a Stop must not prevent it
        except StopIteration as finished:
            return finished.value
        check()


@contextmanager
def checked_between_layers(model: torch.nn.Module, check: Callable[[], None] | None) -> Iterator[None]:
    """Within the block, ``check`` runs before every layer of ``model``'s layer stacks (each member of a
    ``ModuleList``: ESM-2's 36 layers, the folding trunk's 48 blocks, at every recycle), so what it
    raises stops a forward pass within one layer rather than after the whole fold."""
    if check is None:
        yield
        return
    handles = [layer.register_forward_pre_hook(lambda *_: check())
               for stack in model.modules() if isinstance(stack, torch.nn.ModuleList) for layer in stack]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def held(lock: threading.Lock, check: Callable[[], None] | None) -> Iterator[None]:
    """``with lock``, except that ``check`` is polled while another thread holds it (another session's
    fold): what it raises ends the wait."""
    if check is None:
        lock.acquire()
    else:
        while not lock.acquire(timeout=0.1):
            check()
    try:
        yield
    finally:
        lock.release()


class _CachedBackend:
    """Length check, per-sequence cache and the list API shared by the backends."""

    name = "backend"

    def __init__(self, max_length: int, cache_size: int = 256):
        self.max_length = max_length
        self._cache: OrderedDict[str, FoldResult] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def _fold_one(self, sequence: str, check: Callable[[], None] | None) -> FoldResult:
        raise NotImplementedError(f"{type(self).__name__} must implement _fold_one")

    def cached(self, sequence: str) -> FoldResult | None:
        with self._cache_lock:
            if sequence in self._cache:
                self._cache.move_to_end(sequence)
                return self._cache[sequence]
        return None

    def fold(self, sequences: Sequence[str], check: Callable[[], None] | None = None) -> list[FoldResult]:
        """Fold each sequence (cached by sequence). Raises ``FoldError`` on the first failure, and
        whatever ``check`` raises (it is called while a fold works or waits for another fold) as it
        raises it, provided it is not a ``RuntimeError``, which a failing fold raises too."""
        results = []
        for seq in sequences:
            seq = seq.upper()
            if not 1 <= len(seq) <= self.max_length:
                raise FoldError(f"{self.name} folds 1 to {self.max_length} residues; this design has {len(seq)}.",
                                "too_long")
            # transformers' ESMFold folds X, B, Z, U, O and any other letter as "unknown" and leaves it out
            # of the PDB (whose residues then disagree with the pLDDT list), and raises a bare ValueError
            # on '*', '-', digits or spaces: refuse them all here, for every backend, with the position
            bad = next((i for i, ch in enumerate(seq) if ch not in RESIDUES), None)
            if bad is not None:
                raise FoldError(f"{self.name} folds the 20 canonical residues {RESIDUES}; this design has "
                                f"{seq[bad]!r} at position {bad + 1}.", "failed")
            result = self.cached(seq)
            if result is None:
                result = self._fold_one(seq, check)
                with self._cache_lock:
                    self._cache[seq] = result
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
            results.append(result)
        return results


def load_esmfold(name: str) -> torch.nn.Module:
    """``EsmForProteinFolding`` from a local directory, the Hugging Face cache or, failing both, the Hub.

    The Hub is asked once, with no retries, before the download: unreachable, ``from_pretrained``
    spends about 25 s in huggingface_hub's retries only to say so. ``OSError`` when the weights
    are neither here nor reachable.
    """
    from transformers import EsmForProteinFolding
    if (local := Path(name).expanduser()).is_dir():     # a local copy: transformers says what it lacks
        return EsmForProteinFolding.from_pretrained(str(local))
    try:
        return EsmForProteinFolding.from_pretrained(name, local_files_only=True)
    except OSError:             # not in the cache
        pass
    if (problem := hub_problem(name)) is not None:
        raise OSError(f"not in the Hugging Face cache, and the Hub cannot serve it: {problem}")
    return EsmForProteinFolding.from_pretrained(name)


def hub_problem(repo_id: str, timeout: float = 10.0) -> str | None:
    """Why the Hugging Face Hub cannot serve model ``repo_id`` now (one request), or None if it can."""
    from huggingface_hub import HfApi
    try:
        HfApi().model_info(repo_id, timeout=timeout)
    except Exception as e:      # no network, offline mode, an unknown repo or an invalid id: each says why
        return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
    return None


# the outputs of ``EsmForProteinFolding.infer`` that ``output_to_pdb`` and the confidences read
PDB_OUTPUTS = ("positions", "aatype", "atom37_atom_exists", "residx_atom37_to_atom14", "residue_index", "plddt", "ptm")


def plddt_to_100(values: torch.Tensor) -> torch.Tensor:
    """transformers' ESMFold gives pLDDT in [0, 1]; the bands 50/70/90 are on [0, 100]."""
    return values * 100.0


def set_precision(model: torch.nn.Module, gpu: bool, chunk_size: int) -> torch.nn.Module:
    """On a GPU: the ESM-2 stem (most of the weights) in fp16, the trunk's triangular attention in
    chunks of ``chunk_size`` to bound memory. On a CPU: everything fp32 (fp16 matmuls are slow there)."""
    if gpu:
        model.esm.half()
        model.trunk.set_chunk_size(chunk_size)
    else:
        model.float()
    return model


def _after_freeing_gpu(error: FoldError, cause: BaseException) -> FoldError:
    """``error``, once the GPU memory that the failed work held is free. ``cause``'s traceback keeps
    that work's frames (its activations, or weights half loaded) alive, so ``empty_cache`` freed
    nothing while it stood; it is dropped first (the message already says why)."""
    cause.__traceback__ = None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return error


class ESMFoldBackend(_CachedBackend):
    """ESMFold via ``transformers.EsmForProteinFolding``, loaded lazily once.

    ``model`` may be given directly (tests pass a tiny random one); otherwise ``model_name`` (a Hub id
    or a local directory) is loaded on the first fold. ``tokenizer`` is accepted for callers that
    hold the pair ``from_pretrained`` returns, but is not needed: ``EsmForProteinFolding.infer`` maps
    residues to its own (AlphaFold) residue order.
    """

    name = "ESMFold (local)"

    def __init__(self, model_name: str = ESMFOLD_MODEL, device: str | torch.device | None = None,
                 model: torch.nn.Module | None = None, tokenizer=None, max_length: int = 1024,
                 chunk_size: int = 64, cache_size: int = 256, retry_after_s: float = 600.0):
        super().__init__(max_length, cache_size)
        self.model_name = model_name
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.chunk_size = chunk_size
        self.tokenizer = tokenizer
        self._model = self._prepare(model) if model is not None else None
        self._lock = threading.Lock()       # one load, one fold at a time (GPU memory)
        # After a failed load, fail fast for a while rather than ask the Hub again on every fold.
        self.retry_after_s = retry_after_s
        self._load_failure: tuple[float, str] | None = None

    def _prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return set_precision(model.to(self.device).eval(), self.device.type == "cuda", self.chunk_size)

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (the first fold loads them, which can take minutes)."""
        return self._model is not None

    def load(self) -> None:
        """Load the weights now (the first fold would), one load at a time; a ``FoldError`` when they
        are not available."""
        with self._lock:
            self._load()

    def _load(self) -> torch.nn.Module:
        if self._model is not None:
            return self._model
        if self._load_failure and time.monotonic() - self._load_failure[0] < self.retry_after_s:
            raise FoldError(self._load_failure[1], "no_weights")
        try:
            model = self._prepare(load_esmfold(self.model_name))
        except Exception as e:
            # Remembered, whatever the cause, so that the run's other designs fail at once instead of
            # each loading gigabytes again (``fails_every_sequence``): a missing or unreachable repo
            # (transformers' OSError), a damaged or mismatched file (RuntimeError, safetensors' own
            # errors), too little GPU memory for the weights.
            why = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
            if isinstance(e, (OSError, ValueError)):
                message = (f"{self.name}: the weights of {self.model_name!r} are not available here and could not be "
                           f"downloaded ({why}). Install them (`hf download {ESMFOLD_MODEL}`, into the Hugging Face "
                           "cache, where they are looked for).")
            elif isinstance(e, torch.cuda.OutOfMemoryError):
                message = (f"{self.name}: the GPU has too little free memory for the weights of {self.model_name!r} "
                           f"({why}). Free it, or fold with another backend.")
            else:
                message = f"{self.name}: the weights of {self.model_name!r} could not be loaded ({why})."
            self._load_failure = (time.monotonic(), message)
            raise _after_freeing_gpu(FoldError(message, "no_weights"), e) from e
        self._model = model
        return self._model

    def _fold_one(self, sequence: str, check: Callable[[], None] | None) -> FoldResult:
        with held(self._lock, check):
            model = self._load()
            try:
                with checked_between_layers(model, check):
                    output = model.infer(sequence)
                # Only what the PDB and the confidences need, on the CPU, before the lock goes: the
                # pair outputs (distogram, PAE, …) are about L² · 321 floats, 1.3 GB at 1,024 residues.
                output = {k: output[k].detach().cpu() for k in PDB_OUTPUTS}
            except torch.cuda.OutOfMemoryError as e:
                raise _after_freeing_gpu(FoldError(f"{self.name}: the GPU ran out of memory folding {len(sequence)} "
                                                   "residues. Try fewer or shorter designs, or fold later.",
                                                   "out_of_memory"), e) from e
            except RuntimeError as e:          # e.g. the CPU allocator out of memory
                raise FoldError(f"{self.name}: folding {len(sequence)} residues failed "
                                f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}).", "failed") from e
        return self._result(sequence, model, output)

    def _result(self, sequence: str, model, output: dict) -> FoldResult:
        # Rescale before writing the PDB so its B-factors are 0–100 too.
        output["plddt"] = plddt_to_100(output["plddt"].float())
        per_residue = output["plddt"][0, :len(sequence), CA_ATOM].tolist()
        ptm = float(output["ptm"].reshape(-1)[0])
        if not all(math.isfinite(v) for v in [*per_residue, ptm]):     # e.g. an fp16 overflow on a GPU
            raise FoldError(f"{self.name}: folding {len(sequence)} residues gave non-finite confidences (NaN or "
                            "inf), so the structure is meaningless; fold it again on the CPU (fp32).", "failed")
        pdb = model.output_to_pdb(output)[0]
        return FoldResult(sequence, pdb, per_residue, sum(per_residue) / len(per_residue), ptm, self.name)


def _read_pdb(pdb: str):
    """The first model of a PDB text as a biotite ``AtomArray`` with its B-factors."""
    from biotite.structure.io.pdb import PDBFile
    return PDBFile.read(io.StringIO(pdb)).get_structure(model=1, extra_fields=["b_factor"])


def pdb_ca_bfactors(pdb: str) -> list[float]:
    """The B-factor of every Cα atom, in file order."""
    atoms = _read_pdb(pdb)
    return atoms.b_factor[atoms.atom_name == "CA"].tolist()


def rescale_pdb_bfactors(pdb: str, factor: float) -> str:
    """The same atoms with every B-factor multiplied by ``factor`` (first model; coordinate records only)."""
    from biotite.structure.io.pdb import PDBFile
    atoms = _read_pdb(pdb)
    atoms.b_factor = atoms.b_factor * factor
    out, text = PDBFile(), io.StringIO()
    out.set_structure(atoms)
    out.write(text)
    return text.getvalue()


class ESMAtlasBackend(_CachedBackend):
    """The ESM Atlas ``foldSequence`` web API: opt-in, at most 400 residues, no pTM.

    The service's certificate has been unreliable; it is still verified, and a failure says so
    rather than folding over an unchecked connection.
    """

    name = "ESM Atlas API"

    def __init__(self, url: str = ATLAS_URL, timeout: float = 60.0, session=None, cache_size: int = 256):
        super().__init__(ATLAS_MAX_LENGTH, cache_size)
        self.url = url
        self.timeout = timeout
        self._session = session
        self._timeouts_in_row = 0        # read timeouts since the last answer

    def _post(self, sequence: str):
        import requests
        session = self._session or requests
        try:
            response = session.post(self.url, data=sequence, timeout=self.timeout)
        except requests.exceptions.SSLError as e:
            raise FoldError(f"{self.name}: the server's certificate could not be verified ({e}).", "no_network") from e
        except requests.exceptions.ReadTimeout as e:
            # Reached but slow: this design only (a long one), unless the one before timed out too:
            # a service that takes connections and never answers would cost every design the timeout.
            self._timeouts_in_row += 1
            again = self._timeouts_in_row >= 2
            raise FoldError(f"{self.name}: the service did not answer within {self.timeout:g} s for {len(sequence)} "
                            "residues" + (", nor for the design before" if again else "")
                            + "; fold it again later, or locally.", "no_network" if again else "failed") from e
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise FoldError(f"{self.name}: the service cannot be reached from here ({type(e).__name__}).",
                            "no_network") from e
        except requests.exceptions.RequestException as e:      # a broken answer, a redirect loop, …
            raise FoldError(f"{self.name}: the request failed ({type(e).__name__}: {str(e)[:200]}).", "failed") from e
        self._timeouts_in_row = 0
        if response.status_code != 200:
            raise FoldError(f"{self.name}: the service answered HTTP {response.status_code} "
                            f"({response.text[:200].strip()!r}).", "failed")
        return response.text

    def _fold_one(self, sequence: str, check: Callable[[], None] | None) -> FoldResult:
        pdb = self._post(sequence) if check is None else finished_unless_stopped(lambda: self._post(sequence), check)
        try:
            plddt = pdb_ca_bfactors(pdb)
        except Exception as e:             # biotite raises several kinds on a page that is not a PDB
            raise FoldError(f"{self.name}: the answer is not a PDB structure ({type(e).__name__}: "
                            f"{str(e)[:200]}; it began {pdb[:80].strip()!r}).", "failed") from e
        if len(plddt) != len(sequence):
            raise FoldError(f"{self.name}: the answer holds {len(plddt)} residues for a sequence of "
                            f"{len(sequence)}; it is not a structure of this design.", "failed")
        if max(plddt) <= 1.0:              # the API has served both scales; make it 0–100
            pdb = rescale_pdb_bfactors(pdb, 100.0)
            plddt = [100.0 * p for p in plddt]
        return FoldResult(sequence, pdb, plddt, sum(plddt) / len(plddt), None, self.name)
