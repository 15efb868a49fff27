"""Save and load a model: a directory with ``config.json`` and ``model.safetensors``.

``config.json`` carries everything needed to rebuild and use the model (network config, alphabet,
noise schedule, training length histogram, training summary, evaluation metrics); the weights are
the EMA weights. Loading never unpickles anything. A Hugging Face Hub repo id works wherever a
directory does. Resume state (optimizer, step, RNG) lives in a separate file of ``train.py``.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .alphabet import Alphabet
from .hmm import HMM_NAME
from .model import ModelConfig, ScoreNetwork
from .schedule import LogLinearSchedule

FORMAT = "sedd-protein/1"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_BLOCKS = ("format", "model", "alphabet", "schedule")   # config.json's blocks that define the model
# The blocks the weights file repeats in its metadata: a config.json of another model (a save killed
# between its two files after an --overwrite with other settings) or an edited one, with a permuted
# alphabet say, is refused, not loaded. Two saves of one run have the same blocks: their mix loads
# (the weights are the run's; only config.json's training summary is a save behind).
# One metadata entry, a JSON text with sorted keys: safetensors writes its entries in no fixed order,
# and a run's files are the same bytes whether or not it was stopped and resumed.
TIED_BLOCKS = ("model", "alphabet", "schedule")
TIED_KEY = "sedd"
RESUME_NAME = "resume.pt"                          # training state (sedd.train), not part of a checkpoint
EVAL_DIR = "eval"                                  # evaluation report and figures the card links to
CARD_NAME = "README.md"                            # the model card
WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINTS / "acyp"          # the CPU model (mini), always bundled
GPU_CHECKPOINT = CHECKPOINTS / "acyp-base"         # the base model, when one has been trained on a GPU
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")          # owner/name: a Hub repo id, or a path one folder deep


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

    def length_histogram_problem(self) -> str | None:
        """Why lengths cannot be drawn from the training length histogram, or None when they can."""
        if not any(self.length_histogram.values()):     # empty, or all counts 0: nothing to draw from
            return "this checkpoint stores no length histogram"
        beyond = [n_ for n_, c in self.length_histogram.items() if c and not 1 <= n_ <= self.max_len]
        if beyond:
            return (f"this checkpoint's length histogram holds lengths the model cannot take "
                    f"({', '.join(map(str, sorted(beyond)[:5]))}; its lengths are 1 … {self.max_len})")
        return None

    def sample_lengths(self, n: int, generator: torch.Generator) -> list[int]:
        """Draw ``n`` lengths from the training length histogram."""
        problem = self.length_histogram_problem()
        if problem:
            raise ValueError(f"{problem}; give --length N instead of auto")
        lengths = sorted(self.length_histogram)
        counts = torch.tensor([self.length_histogram[n_] for n_ in lengths], dtype=torch.float64)
        idx = torch.multinomial(counts, n, replacement=True, generator=generator)
        return [lengths[i] for i in idx.tolist()]


def atomic_write(path: Path, write) -> None:
    """Write a file via a temporary file in the same directory and ``os.replace``.

    ``write(tmp)`` fills the temporary file. It is fsynced before the rename and the directory after
    it, so a crash or power cut leaves the old file or the new one, never an empty or partial one
    (a rename can reach the disk before the data it points to).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)   # mkstemp makes 0600; checkpoints and downloads are meant to be shared
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        free = shutil.disk_usage(path.parent).free           # before the temporary's space comes back
        Path(tmp).unlink(missing_ok=True)
        # torch.save's word for a full disk is "[enforce fail at inline_container.cc] unexpected pos",
        # safetensors' a SafetensorError: said as what they are; any other error is left as it is
        if isinstance(e, (RuntimeError, SafetensorError)) and (free < 2**26 or "space" in str(e).lower()):
            raise OSError(f"could not write {path}: the disk is full ({free / 2**20:,.1f} MiB free); "
                          f"{_one_line(e)}") from e
        raise
    _fsync_directory(path.parent)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary files ``atomic_write`` left in ``directory`` (and its ``eval/``) when its
    process was killed mid-write; call it only where no other process writes there. The real files
    are intact: the temporary never replaced them."""
    stale = [p for folder in (directory, directory / EVAL_DIR) for p in Path(folder).glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _fsync_file(path: str | Path) -> None:
    """Flush a written file's data to the disk (whatever library wrote it, and however it closed it)."""
    fd = os.open(path, os.O_RDWR)      # Windows commits only through a writable handle
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: str | Path) -> None:
    """Flush a directory's entries (the rename) to the disk; best effort: where a directory cannot be
    opened (Windows) or synced, the rename is already as durable as the platform makes it."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:      # not the locale's (cp1252 cannot hold "τ" or "—")
            f.write(text)
    atomic_write(path, write)


def check_writable(path: str | Path, what: str) -> Path:
    """Refuse, before any slow work, an output path that cannot be written: a directory, or one under
    a file or a read-only folder (``atomic_write`` creates the missing folders), or in a folder that
    takes no file whatever its permissions say (/proc; a full disk). Leaves nothing behind: the test
    file it writes in the nearest folder that exists is gone when it returns."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory; give a file path")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:   # the nearest folder that exists
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{what} {path} cannot be written: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path} cannot be written: no permission to write in {folder}")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"{what} {path} cannot be written: {folder} takes no new file ({e.strerror})") from None
    return path


def available_devices() -> list[str]:
    """The torch devices this machine can run the model on."""
    return ["cpu"] + ["cuda"] * torch.cuda.is_available() + ["mps"] * torch.backends.mps.is_available()


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` when this machine has it, else a one-line ValueError naming it
    and what is available. torch itself fails late and with a traceback: a RuntimeError for a name it
    does not know, an AssertionError ("Torch not compiled with CUDA enabled") for CUDA on a CPU build."""
    use = f"use --device {' or '.join(available_devices())}"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}; {use}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = torch.version.cuda or getattr(torch.version, "hip", None)
            why = "no CUDA GPU visible" if built else "torch built without CUDA"
        elif dev.index is not None and dev.index >= torch.cuda.device_count():
            why = f"it has {torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        else:
            return dev
    elif dev.type == "mps":
        if torch.backends.mps.is_available():
            return dev
        why = "no Apple MPS backend"
    else:
        why = "the model runs on cpu, cuda or mps"
    raise ValueError(f"{device} is not available on this machine ({why}); {use}")


def save(directory: str | Path, model: ScoreNetwork, alphabet: Alphabet, schedule: LogLinearSchedule,
         length_histogram: dict[int, int] | None = None, meta: dict | None = None) -> Path:
    """Write ``model.safetensors`` then ``config.json``, each atomically.

    The config text is made first: a ``meta`` that JSON cannot hold fails before anything is
    written, rather than after new weights have replaced those that the old config describes."""
    directory = Path(directory)
    config = {
        "format": FORMAT,
        "model": model.config.to_dict(),
        "alphabet": alphabet.to_dict(),
        "schedule": schedule.to_dict(),
        "length_histogram": {str(int(k)): int(v) for k, v in sorted((length_histogram or {}).items())},
        **(meta or {}),
    }
    text = json.dumps(config, indent=2) + "\n"
    tied = json.dumps({k: config[k] for k in ("format", *TIED_BLOCKS)}, sort_keys=True)
    _write_weights(directory, {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()},
                   {TIED_KEY: tied})
    atomic_write_text(directory / CONFIG_NAME, text)
    return directory


def convert(source: str | Path, destination: str | Path, dtype: str = "bfloat16") -> Path:
    """Copy a local checkpoint with its weights stored as ``dtype`` (half the size for the 16-bit
    ones); ``config.json`` and the other files beside it (card, ``family.hmm``, plots) and the ``eval/``
    folder the card links to come along; training state (``resume.pt``) and other folders do not.

    ``load`` casts the weights to the dtype it is asked for (float32 by default), so a converted
    checkpoint serves everywhere; bfloat16 keeps float32's range; float16 has three more mantissa
    bits but overflows above 65,504: a weight it cannot hold is refused, not stored as infinity.
    """
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"unknown weight dtype {dtype!r}; choose one of {', '.join(WEIGHT_DTYPES)}")
    source, destination = Path(source), Path(destination)
    if not (source / WEIGHTS_NAME).is_file():
        raise ValueError(f"{source} holds no {WEIGHTS_NAME}; is it a local SEDD checkpoint directory?")
    if destination.resolve() == source.resolve():
        raise ValueError(f"convert writes a new checkpoint: give a destination other than {source}")
    if destination.is_dir() and any(destination.iterdir()):       # an earlier model's card or eval/ would stay
        names = sorted(p.name for p in destination.iterdir())
        held = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
        raise ValueError(f"{destination} already holds files ({held}); convert writes a new checkpoint into a new "
                         "or empty folder, so that nothing of another model is left beside it: remove or move "
                         "the folder, or give another destination")
    _read_config(source)                                              # a valid checkpoint, or a clear error
    state = {}
    for name, value in load_file(str(source / WEIGHTS_NAME)).items():
        state[name] = value.to(WEIGHT_DTYPES[dtype])
        overflow = torch.isfinite(value) & ~torch.isfinite(state[name])
        if overflow.any():
            raise ValueError(f"{name} holds weights up to {value[overflow].abs().max().item():,.6g}, beyond "
                             f"{dtype}'s largest {torch.finfo(state[name].dtype).max:,.0f}; store it as "
                             "bfloat16 or float32")
    destination.mkdir(parents=True, exist_ok=True)
    for item in _checkpoint_files(source, destination):
        atomic_write(destination / item.relative_to(source), lambda tmp, item=item: shutil.copyfile(item, tmp))
    _write_weights(destination, state, _weights_metadata(source / WEIGHTS_NAME) or {"format": FORMAT})
    return destination


def _checkpoint_files(source: Path, destination: Path) -> list[Path]:
    """The files ``convert`` copies: those beside ``config.json`` and everything under ``eval/`` (where
    ``sedd.evaluate --report`` and the card's figures live), except the weights (rewritten) and training
    state. No other folder: a training run's folder may hold whole other models (``gpu_base_model.sh``
    sets one aside there), and a destination inside ``source`` must not be copied into itself."""
    skip = destination.resolve()
    files = [p for p in sorted(source.iterdir()) if p.is_file() and p.name not in (WEIGHTS_NAME, RESUME_NAME)]
    if (source / EVAL_DIR).is_dir() and (source / EVAL_DIR).resolve() != skip:
        for folder, subfolders, names in os.walk(source / EVAL_DIR):
            subfolders[:] = sorted(d for d in subfolders if (Path(folder) / d).resolve() != skip)
            files += [Path(folder) / name for name in sorted(names) if (Path(folder) / name).is_file()]
    return files


def _write_weights(directory: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    state = {k: v.contiguous() for k, v in state.items()}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata=metadata))


def _weights_metadata(weights: Path) -> dict[str, str]:
    """The safetensors file's metadata; empty when it has none or cannot be read (``_read_weights``
    then says what is wrong with the file)."""
    try:
        with safe_open(str(weights), "pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return {}


def _refuse_a_config_of_other_weights(directory: Path, blocks: dict[str, dict]) -> None:
    """``config.json`` must describe the weights beside it: the blocks their metadata repeats
    (``TIED_BLOCKS``; weights saved before it did, the bundled model's among them, repeat none).
    ``blocks``: config.json's, as read (a setting it predates at its default, as it was saved)."""
    try:
        tied = json.loads(_weights_metadata(directory / WEIGHTS_NAME)[TIED_KEY])
    except (KeyError, ValueError):
        tied = None
    if not isinstance(tied, dict):
        return                           # no tie (an older save), or one damaged: the weights still load
    differ = []
    for block in TIED_BLOCKS:
        said = json.loads(json.dumps(blocks[block]))                 # tuples as JSON lists, as the metadata has them
        saved = tied.get(block)
        if isinstance(saved, dict):
            # the settings the weights were saved with; one a later version adds is at its default in ``said``
            differ += [f"{block}.{k}: {v!r} in the weights, {said.get(k)!r} in {CONFIG_NAME}"
                       for k, v in sorted(saved.items()) if said.get(k) != v]
    if differ:
        raise ValueError(f"{directory / CONFIG_NAME} does not describe the {WEIGHTS_NAME} beside it ({'; '.join(differ)}). "
                         f"The two files come from different saves (a save stopped between them, or a {CONFIG_NAME} "
                         "edited or copied from another run); a training run's --resume writes both again")


def named(name_or_path: str | Path | None) -> str | Path:
    """The checkpoint a command means: the one given, else $SEDD_CHECKPOINT, else the bundled model.
    A blank name is refused: ``--checkpoint "$UNSET"`` served the bundled model without a word."""
    if isinstance(name_or_path, str) and not name_or_path.strip():
        raise ValueError("the checkpoint named is blank: give a checkpoint directory or Hugging Face Hub repo id, "
                         "or none for $SEDD_CHECKPOINT or the bundled model")
    return name_or_path or os.environ.get("SEDD_CHECKPOINT") or DEFAULT_CHECKPOINT


def shown(source: str | Path) -> str:
    """A checkpoint as a user should see it in a command: relative to the working directory when it
    lies inside it (``checkpoints/acyp``, which works from the repository root), else as given; a
    server's absolute paths mean nothing to a visitor and show its file system."""
    path = Path(source).expanduser()
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            pass
    return str(source)


def default_for_device(device: str | torch.device) -> str | Path | None:
    """The model to serve when none is named: None if $SEDD_CHECKPOINT is set (``load(None)`` reads it,
    and its errors say where the name came from); else, on a GPU, ``checkpoints/acyp-base`` when it
    holds a checkpoint; else the CPU model ``checkpoints/acyp``."""
    if os.environ.get("SEDD_CHECKPOINT"):
        return None
    if torch.device(device).type == "cuda" and (GPU_CHECKPOINT / CONFIG_NAME).is_file():
        return GPU_CHECKPOINT
    return DEFAULT_CHECKPOINT


def update_config(directory: str | Path, key: str, block: dict) -> Path:
    """Replace one top-level block of a local checkpoint's ``config.json`` (e.g. ``"evaluation"``), atomically."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a local checkpoint directory; its {CONFIG_NAME} cannot be updated")
    if key in MODEL_BLOCKS:
        raise ValueError(f"the {key!r} block defines the model and is not rewritten")
    config = _read_config(directory)
    config[key] = block
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return directory / CONFIG_NAME


def resolve(name_or_path: str | Path | None) -> Path:
    """A local directory as is; else a Hugging Face Hub repo id, unless the name can only be a path.

    A missing directory is reported as such, not as a failed download: a name that is absolute, starts
    with '.' or '~', has a separator but is not shaped ``owner/name``, or sits in a local folder that
    exists (``runs/my-modle``) is a path, and the Hub is not asked; any other ``owner/name`` or bare
    name is tried on the Hub, and its error says that both were tried.
    """
    from_env = " (from $SEDD_CHECKPOINT)" if not name_or_path and os.environ.get("SEDD_CHECKPOINT") else ""
    name_or_path = named(name_or_path)
    name, path = str(name_or_path), Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"checkpoint {name!r}{from_env} is a file; give the directory holding "
                         f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    missing = f"no checkpoint directory {name}{from_env}{_did_you_mean(path)}"
    in_folder = any(s in name for s in (os.sep, os.altsep) if s)
    if path.is_absolute() or name.startswith((".", "~")) or (in_folder and not REPO_ID.fullmatch(name)):
        raise ValueError(missing)
    if in_folder and path.parent.is_dir():
        raise ValueError(f"{missing}; {path.parent} is a local folder, so the Hugging Face Hub was not asked")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError
    try:
        return Path(snapshot_download(name, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, HMM_NAME]))
    except HFValidationError as e:
        raise ValueError(f"checkpoint {name!r} is neither a local directory nor a valid "
                         f"Hugging Face Hub repo id ({_one_line(e)})") from e
    except Exception as e:   # network, 404, gated repo: say which, and that the local directory was looked for
        raise ValueError(f"{missing}, and no Hugging Face Hub repo {name} could be downloaded: "
                         f"{type(e).__name__}: {_one_line(e)}") from e


def _did_you_mean(path: Path) -> str:
    """' (did you mean runs/my-model?)' when the folder holds a directory of a similar name."""
    try:
        near = difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir() if p.is_dir()], n=1)
    except OSError:
        return ""
    return f" (did you mean {path.parent / near[0]}?)" if near else ""


def _one_line(error: Exception, limit: int = 300) -> str:
    """An exception's text on one line (the Hub's errors span several), cut at ``limit`` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _read_config(directory: Path) -> dict:
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise ValueError(f"{directory} holds no {CONFIG_NAME}; is it a SEDD checkpoint directory?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        family = isinstance(found, str) and found.split("/")[0] == FORMAT.split("/")[0]
        raise ValueError(f"{path} is not a {FORMAT} config (format = {found!r})"
                         + (f"; this version of sedd reads only {FORMAT}: a newer sedd wrote it, update sedd to load it"
                            if family else ""))
    for key in ("model", "alphabet", "schedule"):
        if key not in config:
            raise ValueError(f"{path} lacks the {key!r} section")
        if not isinstance(config[key], dict):
            raise ValueError(f"{path}: the {key!r} section must be a JSON object, got {config[key]!r}")
    return config


def _length_histogram(raw, path: Path) -> dict[int, int]:
    """``{"40": 3, ...}`` as ``{40: 3, ...}``; a bad entry is named with the file it is in (else the error
    is int()'s "invalid literal ... 'abc'" with no hint of where the 'abc' came from)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: 'length_histogram' must map lengths to counts, got {type(raw).__name__}")
    histogram = {}
    for key, count in raw.items():
        try:
            length = int(key)
        except ValueError:
            length = None
        if length is None or length < 1:
            raise ValueError(f"{path}: 'length_histogram' has the key {key!r}; keys are lengths (whole numbers ≥ 1)")
        whole = isinstance(count, int) or (isinstance(count, float) and count.is_integer())
        if isinstance(count, bool) or not whole or count < 0:
            raise ValueError(f"{path}: 'length_histogram' has the count {count!r} for length {key}; "
                             "counts are whole numbers ≥ 0")
        histogram[length] = int(count)
    return histogram


def _refuse_unknown_model_settings(section, path: Path) -> None:
    """A 'model' section with settings ModelConfig lacks came from a newer sedd: building the network
    without them would build another network, so they are named (not ModelConfig's TypeError)."""
    unknown = sorted(set(section) - {f.name for f in fields(ModelConfig)}) if isinstance(section, dict) else []
    if unknown:
        raise ValueError(f"{path}: the 'model' section has settings this version of sedd does not know "
                         f"({', '.join(map(repr, unknown))}); a newer sedd wrote it: update sedd to load it")


def _read_weights(directory: Path, model_cfg: ModelConfig) -> ScoreNetwork:
    """The network ``model_cfg`` describes, with the weights of ``directory``'s safetensors file;
    strict: missing, unexpected and mis-shaped weights are all listed in the error."""
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ValueError(f"{directory} holds no {WEIGHTS_NAME}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{weights} is not a readable safetensors file: {e}") from e
    # NaN, inf or whole-number weights load without an error, and then sample nonsense
    unusable = sorted(k for k, v in state.items() if not v.is_floating_point() or not torch.isfinite(v).all())
    if unusable:
        raise ValueError(f"{weights}: weights that are not finite floating-point numbers: {', '.join(unusable)}")
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
    return model


def load(name_or_path: str | Path | None = None, device: str | torch.device = "cpu",
         dtype: torch.dtype = torch.float32, causal: bool | None = False) -> Checkpoint:
    """Load a checkpoint from a directory or Hub repo id (default: the bundled ACYP model).

    Strict: missing, unexpected or mis-shaped weights are listed in the error. CPU float32 unless
    the caller asks otherwise. The model is returned in eval mode. ``causal``: False for a diffusion
    model (what every sampler and score needs), True for the autoregressive baseline
    (``sedd.autoregressive``), None for either.
    """
    device = check_device(device)          # before a download: a bad --device is a one-line error
    directory = resolve(name_or_path)
    config = _read_config(directory)
    _refuse_unknown_model_settings(config["model"], directory / CONFIG_NAME)
    try:
        model_cfg = ModelConfig(**config["model"])
        alphabet = Alphabet.from_dict(config["alphabet"])
        schedule = LogLinearSchedule.from_dict(config["schedule"])
    except KeyError as e:
        raise ValueError(f"{directory / CONFIG_NAME}: a section lacks the setting {e}") from e
    except (TypeError, ValueError) as e:
        raise ValueError(f"{directory / CONFIG_NAME} has an invalid section: {e}") from e
    if causal is not None and model_cfg.causal != causal:
        kinds = {True: "an autoregressive baseline (a causal network)", False: "a diffusion model"}
        raise ValueError(f"{directory} holds {kinds[model_cfg.causal]}; this needs {kinds[causal]}")
    outputs = alphabet.size + int(model_cfg.causal)                # the causal twin also predicts END
    if model_cfg.vocab_size != outputs:
        raise ValueError(f"config mismatch: model predicts {model_cfg.vocab_size} tokens but the alphabet "
                         f"needs {outputs} ({alphabet.size} residues{' + END' if model_cfg.causal else ''})")
    _refuse_a_config_of_other_weights(directory, {"model": model_cfg.to_dict(), "alphabet": alphabet.to_dict(),
                                                  "schedule": schedule.to_dict()})
    model = _read_weights(directory, model_cfg).to(device=device, dtype=dtype).eval()
    meta = {k: v for k, v in config.items() if k not in (*MODEL_BLOCKS, "length_histogram")}
    histogram = _length_histogram(config.get("length_histogram", {}), directory / CONFIG_NAME)
    return Checkpoint(model, alphabet, schedule, histogram, meta, str(name_or_path or directory))
