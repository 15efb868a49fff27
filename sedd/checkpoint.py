"""Save and load a model: a directory with ``config.json`` and ``model.safetensors``.

``config.json`` carries everything needed to rebuild and use the model (network config, alphabet,
noise schedule, training length histogram, training summary, evaluation metrics); the weights are
the EMA weights. Loading never unpickles anything. A Hugging Face Hub repo id works wherever a
directory does. Resume state (optimizer, step, RNG) lives in a separate file of ``train.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .alphabet import Alphabet
from .model import ModelConfig, ScoreNetwork
from .schedule import LogLinearSchedule

FORMAT = "sedd-protein/1"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
RESUME_NAME = "resume.pt"                          # training state (sedd.train), not part of a checkpoint
WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINTS / "acyp"          # the CPU model (mini), always bundled
GPU_CHECKPOINT = CHECKPOINTS / "acyp-base"         # the base model, when one has been trained on a GPU


@dataclass
class Checkpoint:
    """A loaded model with everything needed to sample from it."""

    model: ScoreNetwork
    alphabet: Alphabet
    schedule: LogLinearSchedule
    length_histogram: dict[int, int] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)     # training summary, metrics, anything else
    source: str = ""

    @property
    def max_len(self) -> int:
        return self.model.config.max_len

    def sample_lengths(self, n: int, generator: torch.Generator) -> list[int]:
        """Draw ``n`` lengths from the training length histogram."""
        if not self.length_histogram:
            raise ValueError("this checkpoint stores no length histogram; give --length N instead of auto")
        lengths = sorted(self.length_histogram)
        counts = torch.tensor([self.length_histogram[n_] for n_ in lengths], dtype=torch.float64)
        idx = torch.multinomial(counts, n, replacement=True, generator=generator)
        return [lengths[i] for i in idx.tolist()]


def atomic_write(path: Path, write) -> None:
    """Write a file via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)   # mkstemp makes 0600; checkpoints and downloads are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


def save(directory: str | Path, model: ScoreNetwork, alphabet: Alphabet, schedule: LogLinearSchedule,
         length_histogram: dict[int, int] | None = None, meta: dict | None = None) -> Path:
    """Write ``model.safetensors`` then ``config.json``, each atomically."""
    directory = Path(directory)
    _write_weights(directory, {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()})
    config = {
        "format": FORMAT,
        "model": model.config.to_dict(),
        "alphabet": alphabet.to_dict(),
        "schedule": schedule.to_dict(),
        "length_histogram": {str(k): int(v) for k, v in sorted((length_histogram or {}).items())},
        **(meta or {}),
    }
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return directory


def convert(source: str | Path, destination: str | Path, dtype: str = "bfloat16") -> Path:
    """Copy a local checkpoint with its weights stored as ``dtype`` (half the size for the 16-bit
    ones); ``config.json`` and the other files beside it (card, ``family.hmm``, plots) come along.

    ``load`` casts the weights to the dtype it is asked for (float32 by default), so a converted
    checkpoint serves everywhere; bfloat16 keeps float32's range; float16 has three more mantissa
    bits but overflows above 65,504.
    """
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"unknown weight dtype {dtype!r}; choose one of {', '.join(WEIGHT_DTYPES)}")
    source, destination = Path(source), Path(destination)
    if not (source / WEIGHTS_NAME).is_file():
        raise ValueError(f"{source} holds no {WEIGHTS_NAME}; is it a local SEDD checkpoint directory?")
    if destination.resolve() == source.resolve():
        raise ValueError(f"convert writes a new checkpoint: give a destination other than {source}")
    _read_config(source)                                              # a valid checkpoint, or a clear error
    state = {k: v.to(WEIGHT_DTYPES[dtype]) for k, v in load_file(str(source / WEIGHTS_NAME)).items()}
    destination.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file() and item.name not in (WEIGHTS_NAME, RESUME_NAME):
            atomic_write(destination / item.name, lambda tmp, item=item: shutil.copyfile(item, tmp))
    _write_weights(destination, state)
    return destination


def _write_weights(directory: Path, state: dict[str, torch.Tensor]) -> None:
    state = {k: v.contiguous() for k, v in state.items()}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))


def default_for_device(device: str | torch.device) -> str | Path:
    """The model to serve when none is named: $SEDD_CHECKPOINT if set; else, on a GPU,
    ``checkpoints/acyp-base`` when it holds a checkpoint; else the CPU model ``checkpoints/acyp``."""
    if os.environ.get("SEDD_CHECKPOINT"):
        return os.environ["SEDD_CHECKPOINT"]
    if torch.device(device).type == "cuda" and (GPU_CHECKPOINT / CONFIG_NAME).is_file():
        return GPU_CHECKPOINT
    return DEFAULT_CHECKPOINT


def update_config(directory: str | Path, key: str, block: dict) -> Path:
    """Replace one top-level block of a local checkpoint's ``config.json`` (e.g. ``"evaluation"``), atomically."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a local checkpoint directory; its {CONFIG_NAME} cannot be updated")
    if key in ("format", "model", "alphabet", "schedule"):
        raise ValueError(f"the {key!r} block defines the model and is not rewritten")
    config = _read_config(directory)
    config[key] = block
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return directory / CONFIG_NAME


def resolve(name_or_path: str | Path | None) -> Path:
    """A local directory as is; anything else is treated as a Hugging Face Hub repo id."""
    if name_or_path is None or str(name_or_path) == "":
        name_or_path = os.environ.get("SEDD_CHECKPOINT") or DEFAULT_CHECKPOINT
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"checkpoint {str(path)!r} is a file; give the directory holding "
                         f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError
    try:
        return Path(snapshot_download(str(name_or_path), allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "README.md", "family.hmm"]))
    except HFValidationError as e:
        raise ValueError(f"checkpoint {str(name_or_path)!r} is neither a local directory nor a valid "
                         f"Hugging Face Hub repo id ({e})") from e
    except Exception as e:   # network, 404, gated repo: say which and from where
        raise ValueError(f"could not download checkpoint {str(name_or_path)!r} from the Hugging Face Hub: "
                         f"{type(e).__name__}: {e}") from e


def _read_config(directory: Path) -> dict:
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise ValueError(f"{directory} holds no {CONFIG_NAME}; is it a SEDD checkpoint directory?")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} config (format = {config.get('format') if isinstance(config, dict) else None!r})")
    for key in ("model", "alphabet", "schedule"):
        if key not in config:
            raise ValueError(f"{path} lacks the {key!r} section")
    return config


def load(name_or_path: str | Path | None = None, device: str | torch.device = "cpu",
         dtype: torch.dtype = torch.float32, causal: bool | None = False) -> Checkpoint:
    """Load a checkpoint from a directory or Hub repo id (default: the bundled ACYP model).

    Strict: missing, unexpected or mis-shaped weights are listed in the error. CPU float32 unless
    the caller asks otherwise. The model is returned in eval mode. ``causal``: False for a diffusion
    model (what every sampler and score needs), True for the autoregressive baseline
    (``sedd.autoregressive``), None for either.
    """
    directory = resolve(name_or_path)
    config = _read_config(directory)
    try:
        model_cfg = ModelConfig(**config["model"])
        alphabet = Alphabet.from_dict(config["alphabet"])
        schedule = LogLinearSchedule.from_dict(config["schedule"])
    except (TypeError, KeyError, AssertionError, ValueError) as e:
        raise ValueError(f"{directory / CONFIG_NAME} has an invalid section: {e}") from e
    if causal is not None and model_cfg.causal != causal:
        kinds = {True: "an autoregressive baseline (a causal network)", False: "a diffusion model"}
        raise ValueError(f"{directory} holds {kinds[model_cfg.causal]}; this needs {kinds[causal]}")
    outputs = alphabet.size + int(model_cfg.causal)                # the causal twin also predicts END
    if model_cfg.vocab_size != outputs:
        raise ValueError(f"config mismatch: model predicts {model_cfg.vocab_size} tokens but the alphabet "
                         f"needs {outputs} ({alphabet.size} residues{' + END' if model_cfg.causal else ''})")

    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ValueError(f"{directory} holds no {WEIGHTS_NAME}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{weights} is not a readable safetensors file: {e}") from e

    model = ScoreNetwork(model_cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                        for k, v in expected.items() if k in state and state[k].shape != v.shape)
    if missing or unexpected or mis_shaped:
        raise ValueError(f"{weights} does not match {CONFIG_NAME}: "
                         f"missing keys {missing}, unexpected keys {unexpected}, shape mismatches {mis_shaped}")
    model.load_state_dict(state, strict=True)
    model.to(device=device, dtype=dtype).eval()
    meta = {k: v for k, v in config.items() if k not in ("format", "model", "alphabet", "schedule", "length_histogram")}
    histogram = {int(k): int(v) for k, v in config.get("length_histogram", {}).items()}
    return Checkpoint(model, alphabet, schedule, histogram, meta, str(name_or_path or directory))
