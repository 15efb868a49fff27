"""What the command-line tools share: argparse types, each refusing an out-of-range value and saying
what is allowed (argparse then stops with ``error: argument --flag: ...`` and exit code 2) before
anything is loaded or computed; ``RankZeroParser`` for a tool that torchrun starts once per rank; and
how a tool ends (``script``, ``run``) and prints its warnings."""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import warnings
from typing import NoReturn

from .alphabet import Alphabet
from .checkpoint import check_writable
from .model import PRESETS
from .sampler import MAX_SEED, MAX_STEPS


def whole_number(text: str) -> int:
    """A typed whole number: ASCII digits with an optional sign and surrounding spaces, the one rule
    for a count or seed wherever it is typed (the studio's inputs too). ``int()`` alone also reads
    ``"٣٢"`` as 32 and ``"1_000"`` as 1000; ``"1e3"`` and ``"3.0"`` are refused by both."""
    match = re.fullmatch(r"\s*([+-]?)0*([0-9]+)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a whole number")
    if len(match[2]) > sys.get_int_max_str_digits():      # int() would refuse it in words about Python
        raise ValueError(f"a whole number of {len(match[2]):,} digits is beyond any count or seed")
    return int(match[1] + match[2])         # leading zeros dropped: they count towards int()'s limit too


def checked(convert, ok, allowed: str):
    """An argparse ``type``: ``convert`` the text, and refuse it unless ``ok(value)``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}")
        return value
    return parse


COUNT = checked(whole_number, lambda v: v > 0, "a whole number above 0")
COUNT_OR_ZERO = checked(whole_number, lambda v: v >= 0, "a whole number, 0 or more")
TWO_OR_MORE = checked(whole_number, lambda v: v >= 2, "a whole number, at least 2 (a standard error needs two)")
POSITIVE = checked(float, lambda v: 0 < v < math.inf, "a number above 0")
POSITIVE_OR_ZERO = checked(float, lambda v: 0 <= v < math.inf, "a number, 0 or more")
FRACTION = checked(float, lambda v: 0 <= v < 1, "a number from 0 up to (not including) 1")
PROBABILITY_MASS = checked(float, lambda v: 0 < v <= 1, "a number above 0 and at most 1")
STEPS = checked(whole_number, lambda v: 0 < v <= MAX_STEPS, f"a whole number from 1 to {MAX_STEPS:,}")
SEED = checked(whole_number, lambda v: 0 <= v <= MAX_SEED, "a whole number from 0 to 2**63 - 1")
# an --out folder: a blank one (an unset $OUT) wrote sedd.train's run, or sedd.data's split, into the working folder
FOLDER = checked(str, lambda v: bool(v.strip()), "a folder (it is blank)")
# an input file: a blank --clusters (an unset $CLUSTERS) meant none, and the run split at random without a word
FILE = checked(str, lambda v: bool(v.strip()), "a file (it is blank)")

def ALPHABET(text: str) -> Alphabet:
    """--alphabet: a model's residue characters ('_' stays the designed-position mark)."""
    try:
        return Alphabet(text, mask_chars="_")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def PRESET_LIST(text: str) -> list[str]:
    """--presets: comma-separated model presets, each refused now unless it is one (an unknown one
    was found after the presets before it had been measured)."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in PRESETS]
    if unknown:
        raise argparse.ArgumentTypeError(f"invalid choice: {unknown[0]!r} (choose from {', '.join(map(repr, PRESETS))})")
    return names


MAX_MODEL_LEN = 100_000         # titin, the longest known protein, has about 35,000 residues
MAX_TOKENS_PER_BATCH = 2**20    # a batch's activations grow with it: a million residues is beyond any one device
MODEL_LENGTH = checked(whole_number, lambda v: 0 < v <= MAX_MODEL_LEN,
                       f"a length from 1 to {MAX_MODEL_LEN:,} residues")
BATCH_TOKENS = checked(whole_number, lambda v: 0 < v <= MAX_TOKENS_PER_BATCH,
                       f"a batch size from 1 to {MAX_TOKENS_PER_BATCH:,} residues")


class RankZeroParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` for a tool started by ``torchrun``: every rank parses the same command line
    and exits with the same code, but only rank 0 (``$RANK``) prints the usage, the help and the
    error, so a typo is one message, not one per process."""

    @staticmethod
    def speaks() -> bool:
        return os.environ.get("RANK", "0") == "0"

    def print_usage(self, file=None) -> None:
        if self.speaks():
            super().print_usage(file)

    def print_help(self, file=None) -> None:
        if self.speaks():
            super().print_help(file)

    def exit(self, status: int = 0, message: str | None = None):
        super().exit(status, message if self.speaks() else None)


def REGEX(text: str) -> str:
    """A regular expression (``evaluate --motif``), refused with Python's reason when it does not compile,
    and when it matches the empty text (``--motif "$UNSET"`` matches every sequence: a rate of 1)."""
    try:
        pattern = re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular expression ({e})") from None
    if pattern.search(""):
        raise argparse.ArgumentTypeError(f"{text!r} matches the empty text: a motif must need at least one "
                                         "residue, such as 'G.VQG[VI].[FY]R'")
    return text


def OUTPUT_FILE(text: str) -> str:
    """A file the tool writes when its work is done (``--json``, ``--plot``): refused now, not after
    minutes of work, where it cannot be written (a directory, a path under a file, a read-only folder)."""
    try:
        check_writable(text, "file")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def refuse_overwriting_inputs(outputs: dict[str, str | os.PathLike | None],
                              inputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse, before any work, an output file that is one of the inputs (``--out X.fa`` for the FASTA it
    reads, a report beside the samples FASTA it would replace): a ValueError naming both. Keys are what
    the message calls each file (``--report's samples FASTA``); None values are skipped."""
    def same(a, b) -> bool:
        try:
            return os.path.samefile(a, b)
        except OSError:                 # an output not yet written is no input
            return False
    for out_name, out_path in outputs.items():
        for in_name, in_path in inputs.items():
            if out_path is not None and in_path is not None and same(out_path, in_path):
                raise ValueError(f"{out_name} {out_path} is the file {in_name} reads: writing it would replace "
                                 "that input; choose another path")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation that failed: a GPU's OutOfMemoryError, or the CPU allocator's
    RuntimeError ("can't allocate memory")."""
    import torch
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


@contextlib.contextmanager
def one_line_warnings():
    """Within it, a warning prints as ``warning: message`` on stderr, not as Python's two lines
    with a line of our source code; the library itself still raises ordinary warnings."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)
        yield


def script(main) -> int:
    """A benchmark script's exit code: ``main()``'s when it returns one (anything else, such as a
    report, is 0), as ``run`` gives it; what its inputs cannot give (a missing or empty FASTA, a
    checkpoint that does not load, a template the model refuses) ends it with one ``error:`` line and
    exit code 2, as the ``sedd`` commands end, not with a traceback."""
    try:
        code = run(main)
        return code if isinstance(code, int) else 0
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(main) -> int:
    """``main()``'s exit code; a reader that stops early (``| head``) ends the tool quietly, as it would any
    Unix tool, instead of with a BrokenPipeError traceback (Python's documented recipe, exit code 1).
    Ctrl-C too ends it with one line, not a traceback (``interrupted``). Files are written whole or not
    at all, so an interrupted tool leaves none half-written."""
    try:
        code = main()
        sys.stdout.flush()              # a broken pipe surfaces here, not in the interpreter's last flush
        return code
    except KeyboardInterrupt:
        interrupted()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())       # the interpreter flushes stdout again at exit
        return 1


def interrupted() -> NoReturn:
    """End the process after Ctrl-C: one line (from rank 0 only, under torchrun), then death by SIGINT
    itself, status 130 to the shell. An exit with status 130 would not do: a shell script or loop
    running the tool goes on after a child that exited, and stops only after one the signal killed."""
    if os.environ.get("RANK", "0") == "0":
        print("\nstopped by Ctrl-C", file=sys.stderr, flush=True)   # a new line: a progress bar may hold the last
    die_by(signal.SIGINT)


def die_by(signum: int) -> NoReturn:
    """End the process by the signal ``signum`` itself (the shell sees 128 + its number), so that a
    script or loop running the tool stops too."""
    if os.name == "nt":                 # os.kill there is TerminateProcess, with the signal's number as the code
        raise SystemExit(128 + signum)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)      # not reached where the signal ends a process (everywhere but Windows)
