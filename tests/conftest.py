"""Shared fixtures: tiny models and synthetic protein families (no ../shared, no network)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from sedd import checkpoint, data
from sedd.alphabet import PROTEIN
from sedd.model import ScoreNetwork, preset
from sedd.schedule import LogLinearSchedule

torch.set_num_threads(1)

# Fixtures shared across modules beyond these: the browser tests' Chromium, server and page, and the
# training tests' synthetic families (their helpers are imported from the same modules).
pytest_plugins = ["browser_helpers", "train_helpers"]

BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints" / "acyp"      # the model shipped in the repository


def as_dataset(sequences: list[str]) -> data.Dataset:
    """Protein sequences as a Dataset with ids s0, s1, …"""
    return data.Dataset([f"s{i}" for i in range(len(sequences))], [PROTEIN.encode(s) for s in sequences])


def profile_family(n: int, length: int, seed: int = 0, sharpness: float = 3.0) -> tuple[list[str], torch.Tensor]:
    """Sequences drawn from a random position-specific profile: returns (sequences, profile [L, 20])."""
    gen = torch.Generator().manual_seed(seed)
    profile = torch.softmax(sharpness * torch.randn(length, PROTEIN.size, generator=gen), dim=-1)
    idx = torch.multinomial(profile, n, replacement=True, generator=gen).T          # [n, L]
    return ["".join(PROTEIN.residues[i] for i in row) for row in idx.tolist()], profile


def write_fasta(path, sequences, prefix="seq") -> None:
    data.write_fasta(path, sequences, ids=[f"{prefix}{i} synthetic" for i in range(len(sequences))])


def run_main(capsys, main, *args) -> tuple[int, str, str]:
    """A command line's ``main`` called with ``args`` (each made a string): (exit code, stdout, stderr).
    An argparse refusal (``SystemExit``) is its exit code, as in a shell."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def write_dna_hmm(path):
    """A DNA profile HMM (of three identical sequences) written to ``path``; returns ``path``."""
    from pyhmmer import easel, plan7

    alphabet = easel.Alphabet.dna()
    rows = [easel.TextSequence(name=f"s{i}".encode(), sequence="ACGTACGTAGCTAGCTAGCA") for i in range(3)]
    msa = easel.TextMSA(name=b"dna", sequences=rows).digitize(alphabet)
    model, _, _ = plan7.Builder(alphabet).build_msa(msa, plan7.Background(alphabet))
    with open(path, "wb") as f:
        model.write(f)
    return path


@pytest.fixture
def tiny_model() -> ScoreNetwork:
    torch.manual_seed(0)
    return ScoreNetwork(preset("tiny", vocab_size=PROTEIN.size, dropout=0.0)).eval()


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    return checkpoint.save(tmp_path / "ckpt", tiny_model, PROTEIN, LogLinearSchedule(), {40: 3, 50: 2},
                           meta={"training": {"note": "random tiny model for tests"}})


@pytest.fixture(scope="module")
def bundled():
    """The bundled checkpoint, loaded once per test module."""
    return checkpoint.load(BUNDLED)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny random model loaded through the real checkpoint path (shared by the studio tests)."""
    from studio_helpers import tiny_checkpoint_dir
    return checkpoint.load(tiny_checkpoint_dir(tmp_path_factory.mktemp("ckpt")))


@pytest.fixture(scope="module")
def served(model):
    """The studio over ``model``, no folding, served from this process for one test module; its URL."""
    from studio_helpers import launch_app
    demo, url = launch_app(model, {"off": None})
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(served):
    """A ``gradio_client.Client`` of ``served``."""
    from gradio_client import Client
    return Client(served, verbose=False)


@pytest.fixture(scope="module")
def esmfold():
    """A tiny random ESMFold behind the real backend (one per test module: its cache starts empty)."""
    from studio_helpers import tiny_esmfold

    from sedd.fold import ESMFoldBackend
    return ESMFoldBackend(model=tiny_esmfold(), device="cpu")


@pytest.fixture
def rng() -> random.Random:
    return random.Random(0)
