"""The training tests' shared pieces: small synthetic families (fixtures, registered as a plugin by
conftest.py), the run configurations the tests start from, and a quiet ``Trainer``."""
from __future__ import annotations

import warnings

import pytest
import torch

from conftest import profile_family, write_fasta
from sedd.train import TrainConfig, Trainer


@pytest.fixture
def short_family(tmp_path):
    """60 sequences of lengths 12–30 from one profile, in a FASTA file."""
    seqs, _ = profile_family(60, 30, seed=0)
    seqs = [s[:12 + (7 * i) % 19] for i, s in enumerate(seqs)]
    path = tmp_path / "family.fasta"
    write_fasta(path, seqs)
    return path


@pytest.fixture
def uneven_family(tmp_path):
    """120 sequences of lengths 12–40 from one profile: a few batches per epoch, of unequal sizes."""
    seqs, _ = profile_family(120, 40, seed=0)
    seqs = [s[:12 + (7 * i) % 29] for i, s in enumerate(seqs)]
    path = tmp_path / "family.fasta"
    write_fasta(path, seqs)
    return path


@pytest.fixture(scope="module")
def family_and_clusters(tmp_path_factory):
    """The sequences of ``uneven_family`` and a cluster<TAB>member TSV of them (four per cluster):
    (FASTA, TSV), shared by a test module."""
    folder = tmp_path_factory.mktemp("family")
    seqs, _ = profile_family(120, 40, seed=0)
    write_fasta(folder / "family.fasta", [s[:12 + (7 * i) % 29] for i, s in enumerate(seqs)])
    (folder / "clusters.tsv").write_text("".join(f"c{i // 4}\tseq{i}\n" for i in range(len(seqs))))
    return folder / "family.fasta", folder / "clusters.tsv"


def two_step_config(data, out, **kw) -> TrainConfig:
    """A tiny model for two steps, never validated."""
    defaults = dict(preset="tiny", tokens_per_batch=256, warmup_steps=2, eval_every=1000, eval_max_seqs=8,
                    checkpoint_minutes=60, patience=0, max_steps=2)
    return TrainConfig(data=str(data), out=str(out), **{**defaults, **kw})


def importance_config(data, out, **kw) -> TrainConfig:
    """A tiny model with dropout and importance-sampled times, validated every 7 steps."""
    defaults = dict(preset="tiny", tokens_per_batch=256, warmup_steps=4, eval_every=7, eval_max_seqs=16, lr=3e-3,
                    dropout=0.1, time_sampling="importance", checkpoint_minutes=60, patience=0)
    return TrainConfig(data=str(data), out=str(out), **{**defaults, **kw})


def dropout_config(data, out, **kw) -> TrainConfig:
    """A tiny model with dropout, validated every 5 steps."""
    defaults = dict(preset="tiny", tokens_per_batch=256, warmup_steps=4, eval_every=5, eval_max_seqs=16, lr=3e-3,
                    dropout=0.1, checkpoint_minutes=60, patience=0)
    return TrainConfig(data=str(data), out=str(out), **{**defaults, **kw})


def trainer(cfg: TrainConfig) -> Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # the by-sequence split warning
        return Trainer(cfg)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
