"""FASTA reading and writing, cluster-aware validation splits and length-bucketed batches.

    python -m sedd.data --data acyp.fasta --clusters acyp_clusters50.tsv --out runs/split

writes the split that training and ``sedd.evaluate --clusters`` make, as ``train.fasta`` and
``val.fasta`` (the inputs of ``sedd.hmm`` and of the benchmarks that compare with naturals).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import random
import sys
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .alphabet import HEADER_LINE, PROTEIN, Alphabet, is_blank, without_comments
from .cli import ALPHABET, FILE, FOLDER, MODEL_LENGTH, SEED, one_line_warnings, refuse_overwriting_inputs, run


@dataclass
class Dataset:
    """Encoded sequences with their FASTA ids."""

    ids: list[str]
    tokens: list[list[int]]
    dropped: Counter = field(default_factory=Counter)   # reason (a character, or a length) → sequences
    num_dropped: int = 0

    def __len__(self) -> int:
        return len(self.tokens)

    def length_histogram(self) -> dict[int, int]:
        return dict(sorted(Counter(len(t) for t in self.tokens).items()))

    def subset(self, indices) -> "Dataset":
        return Dataset([self.ids[i] for i in indices], [self.tokens[i] for i in indices])

    def num_residues(self) -> int:
        return sum(len(t) for t in self.tokens)


GZIP_MAGIC = b"\x1f\x8b"


def fasta_text(path: Path) -> str:
    """A FASTA file's text; gzip-compressed files (UniProt and Pfam downloads, ``.fasta.gz``) are
    decompressed, recognised by their first bytes rather than their name."""
    raw = Path(path).read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"could not read {path} as gzip-compressed FASTA: {e}") from e
    try:       # utf-8-sig: a byte-order mark (Windows editors) is dropped, not taken for the first character
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(not_utf8(path, "FASTA file", e)) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")   # the universal newlines read_text gave


def record_id(header: str, number: int) -> str:
    """A FASTA record's id: the first word of its header, or ``record_N`` (its 1-based number in the
    file) when the header is empty."""
    words = header.split()
    return words[0] if words else f"record_{number}"


def fasta_spans(text: str) -> list[tuple[str, int, int]]:
    """(id, start, end) of every record's body in a FASTA text, in order: the one reading of FASTA
    that training, evaluation, ``sedd.score`` and the studio share, so a file gives the same records
    to each. ``without_comments(text)[start:end]`` is the body as written; each reader
    applies the sequence rules (whitespace, digits and one trailing ``*`` ignored) and refuses or
    drops what breaks them.

    A header is a line whose first non-blank character is ``>`` (a pasted block is often indented as
    a whole), named by ``record_id``; records with the same id are all kept. Comment lines are
    blanked (``without_comments``). Text before the first header is a record of its own, named
    ``sequence``: a sequence without a header, not the start of the next record, which would then be
    dropped unseen (a file allows one line of it: ``fasta_file_text``)."""
    text = without_comments(text)
    headers = list(HEADER_LINE.finditer(text))
    first = headers[0].start() if headers else len(text)
    spans = [("sequence", 0, first)] if text[:first].strip() or not headers else []
    for header, after in zip(headers, headers[1:] + [None]):
        end = after.start() if after else len(text)
        newline = text.find("\n", header.end(), end)
        body = end if newline < 0 else newline + 1
        spans.append((record_id(text[header.end():body], len(spans) + 1), body, end))
    return spans


def fasta_records(text: str) -> list[tuple[str, str]]:
    """(id, body) of every record of a FASTA text (``fasta_spans``)."""
    plain = without_comments(text)
    return [(name, plain[start:end]) for name, start, end in fasta_spans(text)]


def fasta_file_text(path: str | Path) -> str:
    """The text of a FASTA file (``fasta_text``: gzip or plain), comment lines blanked, refused with
    the reason when it is not a file, holds no record, or holds several lines before its first ``>``
    header. One line there is a header-less first record, as in pasted text; several are most often
    bare sequences, one per line, which read as one record would be joined into a single sequence
    without a word."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a FASTA file")
    if path.exists() and not path.is_file():     # <(zcat x.fa.gz): a run reads its data again when it resumes
        raise ValueError(f"FASTA file {path} is not a regular file (a pipe?): give the file itself; a gzip-"
                         "compressed FASTA is read as it is")
    if not path.is_file():
        raise FileNotFoundError(f"FASTA file {path} does not exist")
    text = fasta_text(path)
    if not text.strip():
        raise ValueError(f"FASTA file {path} is empty: give one or more sequences")
    plain = without_comments(text)
    if not plain.strip():
        raise ValueError(f"FASTA file {path} holds only comment lines (lines that start with ;) and no sequence")
    first = HEADER_LINE.search(plain)
    before = [(i, line) for i, line in enumerate(plain[:first.start() if first else len(plain)].split("\n"))
              if line.strip()]
    if len(before) > 1:
        i, line = before[0]
        raise ValueError(f"FASTA file {path} has {len(before)} lines before its first header line "
                         f"(from line {i + 1}: {line.strip()[:30]!r}): one sequence per line, or one sequence "
                         "wrapped? Start each record with a header line such as '>name'")
    return plain


def read_fasta_records(path: str | Path) -> list[tuple[str, str]]:
    """``fasta_records`` of a FASTA file, checked by ``fasta_file_text``."""
    return fasta_records(fasta_file_text(path))


MAX_LEN = 128       # the longest sequence training keeps unless told otherwise (``--max-len``)


def longer_than(max_len: int) -> str:
    """The reason ``read_fasta`` counts a sequence over ``max_len`` under, in ``Dataset.dropped``."""
    return f"longer than {max_len}"


def read_fasta(path: str | Path, alphabet: Alphabet, max_len: int | None = None) -> Dataset:
    """Read a FASTA file (``read_fasta_records``); drop (and count) sequences with characters outside
    the alphabet or too long. Whitespace, digits (a GenBank-style numbered block) and one trailing
    ``*`` are ignored, as the template rules and ``sedd.score`` ignore them, except where the alphabet
    has them as residues (a text model's space)."""
    ids, tokens, dropped, num_dropped = [], [], Counter(), 0
    spaced = any(is_blank(ch) for ch in alphabet.residues)        # a text model's space is a residue
    for name, body in read_fasta_records(path):
        if spaced:      # a blank line (a comment line is blanked to spaces) holds no residue, not a run of spaces
            body = "\n".join(line for line in body.split("\n") if not all(map(is_blank, line)))
        # a stop, judged before the digits go, as templates judge it
        # whitespace is skipped unless the alphabet has it as a residue (a text model's space), as templates read it
        seq = "".join(ch for ch in alphabet.strip_stop(body) if alphabet.is_valid(ch) or not is_blank(ch))
        seq = "".join(ch for ch in seq if ch not in "0123456789" or alphabet.is_valid(ch))
        bad = sorted({ch for ch in seq if not alphabet.is_valid(ch)})
        too_long = max_len is not None and len(seq) > max_len
        if bad or too_long or not seq:
            dropped.update(bad or [longer_than(max_len) if seq else "empty"])
            num_dropped += 1
            continue
        ids.append(name)
        tokens.append(alphabet.encode(seq))
    data = Dataset(ids, tokens, dropped, num_dropped)
    if not tokens:
        gaps = " (an alignment? remove its gap characters)" if {"-", "."} & set(dropped) else ""
        raise ValueError(f"{path} holds no usable sequence over the alphabet {alphabet.residues!r}"
                         + (f": {describe_dropped(data)}{gaps}" if num_dropped else ""))
    return data


def describe_dropped(data: Dataset) -> str:
    """'dropped 61 of 24,931 sequences: 61 contain 'X'' — or '' when nothing was dropped."""
    if not data.num_dropped:
        return ""
    reasons = ", ".join(f"{n} contain {k!r}" if len(k) == 1 else f"{n} {k}" for k, n in data.dropped.most_common())
    return f"dropped {data.num_dropped:,} of {data.num_dropped + len(data):,} sequences: {reasons}"


def format_fasta(sequences: list[str], ids: list[str] | None = None, prefix: str = "seq", first: int = 1) -> str:
    """FASTA text, one ``>id`` line and one sequence line per record; ids default to prefix_1, prefix_2, …
    (numbered from ``first``)."""
    ids = ids if ids is not None else [f"{prefix}_{i}" for i in range(first, first + len(sequences))]
    if len(ids) != len(sequences):
        raise ValueError(f"{len(ids)} ids for {len(sequences)} sequences")
    return "".join(f">{name}\n{seq}\n" for name, seq in zip(ids, sequences))


def write_fasta(path: str | Path, sequences: list[str], ids: list[str] | None = None, prefix: str = "seq") -> Path:
    """``format_fasta`` written atomically to ``path``."""
    ckpt.atomic_write_text(Path(path), format_fasta(sequences, ids, prefix))
    return Path(path)


def not_utf8(path, what: str, e: UnicodeDecodeError) -> str:
    """The refusal of a text file that is not UTF-8, naming it and the first bad byte."""
    return (f"{what} {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8 or plain ASCII")


def read_clusters(path: str | Path) -> dict[str, str]:
    """member → cluster representative, from a ``cluster<TAB>member`` TSV (MMseqs2 easy-cluster).

    An optional ``cluster<TAB>member`` header line and blank lines are skipped; any other line that
    is not two tab-separated fields is an error naming the line, and so is a member listed under two
    clusters (keeping either would put the other cluster's sequence on a side it does not belong to).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cluster file {path} is a folder, not a cluster<TAB>member file")
    if path.exists() and not path.is_file():
        raise ValueError(f"cluster file {path} is not a regular file (a pipe?): give the file itself")
    if not path.is_file():
        raise FileNotFoundError(f"cluster file {path} does not exist")
    clusters: dict[str, str] = {}
    first_line: dict[str, int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:      # -sig: a byte-order mark is dropped
            # no quoting: a '"' starting an id is part of it, not the start of a field spanning lines
            for number, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                row = [field.strip() for field in row]          # 'seq0 ' is FASTA's id 'seq0'
                if not any(row) or (number == 1 and row[:2] == ["cluster", "member"]):
                    continue
                if len(row) != 2 or not all(row):
                    raise ValueError(f"{path}, line {number}: expected 'cluster<TAB>member', got {row!r}")
                cluster, member = row
                if clusters.setdefault(member, cluster) != cluster:
                    raise ValueError(f"{path}, line {number}: {member!r} is listed under cluster {cluster!r} here and "
                                     f"under {clusters[member]!r} on line {first_line[member]}; a sequence belongs to "
                                     "one cluster (two records sharing an id? give each its own id)")
                first_line.setdefault(member, number)
    except UnicodeDecodeError as e:
        raise ValueError(not_utf8(path, "cluster file", e)) from None
    if not clusters:
        raise ValueError(f"cluster file {path} holds no cluster<TAB>member line")
    return clusters


def split(data: Dataset, val_fraction: float, seed: int, clusters: dict[str, str] | None = None) -> tuple[Dataset, Dataset]:
    """Split into (train, validation); by whole clusters when ``clusters`` is given.

    With clusters (member → cluster; sequences missing from it are clusters of their own): the
    cluster names are shuffled with ``seed`` and whole clusters are moved to validation until it
    holds at least ``val_fraction`` of the *sequences* (so it overshoots by less than one cluster).
    No cluster has members on both sides, and no sequence either: a copy of a held-out sequence under
    another id, in another cluster (a cluster file made from other data, or one that lacks the id),
    is left out of training (a warning counts them). Without clusters the split is by sequence, and
    near-duplicates, copies included, leak into validation (a warning says so). A cluster map that
    names none of the sequences is refused (``check_cluster_ids``): the split would be by sequence.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"the validation fraction must be between 0 and 1, got {val_fraction}")
    rng = random.Random(seed)
    if clusters is None:
        warnings.warn("validation split is random by sequence: near-duplicates will leak into validation "
                      "and flatter the ELBO; pass --clusters for a cluster-held-out split", stacklevel=2)
        order = list(range(len(data)))
        rng.shuffle(order)
        n_val = max(1, int(round(val_fraction * len(data))))
        if n_val >= len(data):
            raise ValueError(f"holding out {n_val} of {len(data)} sequence(s) for validation leaves none to "
                             "train on; give more sequences (or, in sedd.data and sedd.evaluate, a smaller --val-fraction)")
        return data.subset(sorted(order[n_val:])), data.subset(sorted(order[:n_val]))
    check_cluster_ids(data, clusters)
    # sequences missing from the cluster file are their own cluster
    groups: dict[str, list[int]] = {}
    for i, seq_id in enumerate(data.ids):
        groups.setdefault(clusters.get(seq_id, seq_id), []).append(i)
    names = sorted(groups)
    rng.shuffle(names)
    val, target = [], val_fraction * len(data)
    for name in names:
        if len(val) >= target:
            break
        val.extend(groups[name])
    val_set = set(val)
    held_out = {tuple(data.tokens[i]) for i in val}
    train = [i for i in range(len(data)) if i not in val_set]
    copies = [i for i in train if tuple(data.tokens[i]) in held_out]
    if copies:
        warnings.warn(f"left {len(copies)} sequence(s) out of training, copies of held-out sequences under other ids "
                      f"in other clusters (first: {data.ids[copies[0]]})", stacklevel=2)
        left_out = set(copies)
        train = [i for i in train if i not in left_out]
    if not train:
        raise ValueError(f"holding out whole clusters until validation has {val_fraction:g} of the {len(data)} "
                         f"sequences leaves none to train on ({len(groups)} cluster(s)); give more sequences "
                         "or clusters (or, in sedd.data and sedd.evaluate, a smaller --val-fraction)")
    return data.subset(train), data.subset(sorted(val))


def check_cluster_ids(data: Dataset, clusters: dict[str, str]) -> None:
    """Refuse a cluster map that names none of ``data``'s sequences, and warn when it lacks most, or
    when several records share an id (the map can place only one of them: all follow its cluster).

    Every sequence it lacks is a cluster of its own, so a map made for other data, or with ids spelled
    otherwise (``sp|P07311|ACYP1_HUMAN`` against ``P07311``), would silently give a split by sequence,
    with the near-duplicates in validation that the clusters were there to keep out.
    """
    shared = [seq_id for seq_id, n in Counter(data.ids).items() if n > 1]
    if shared:
        warnings.warn(f"{len(shared):,} FASTA id(s) name more than one record (such as {shared[0]!r}); the "
                      "cluster file places an id, so all its records go to that id's cluster and side of the "
                      "split: give each record its own id unless they are the same protein")
    missing = [seq_id for seq_id in data.ids if seq_id not in clusters]
    members = f"cluster members such as {next(iter(clusters))!r}" if clusters else "no cluster members"
    if len(missing) == len(data):
        raise ValueError(f"the cluster file names none of the {len(data)} sequences (FASTA ids such as "
                         f"{data.ids[0]!r}, {members}); give the cluster file of this FASTA, whose members are "
                         "the first words of its '>' lines")
    if 2 * len(missing) > len(data):
        warnings.warn(f"the cluster file lacks {len(missing):,} of the {len(data):,} sequences (such as "
                      f"{missing[0]!r}; {members}); each is split as a cluster of its own, so their near-duplicates "
                      "can land in validation: is it the cluster file of this FASTA?")


def bucketed_batches(lengths: list[int], tokens_per_batch: int, seed: int, rank: int = 0,
                     world_size: int = 1) -> list[list[int]]:
    """Shuffle, then group sequences of similar length so a batch carries little padding.

    Sequences are sorted by length inside windows of 100 batches' worth of sequences, cut into
    batches of at most ``tokens_per_batch`` padded tokens (a sequence longer than that is a batch of
    its own), and the batches shuffled. Under DDP each rank takes every ``world_size``-th batch (the
    count is trimmed so all ranks step together).
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a whole number ≥ 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be 0 … {world_size - 1} for world_size {world_size}, got {rank!r}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mean_len = max(1, sum(lengths) // max(1, len(lengths)))
    window = max(1, 100 * tokens_per_batch // mean_len)
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batch: list[int] = []
        for i in chunk:
            if batch and (len(batch) + 1) * max(lengths[i], lengths[batch[0]]) > tokens_per_batch:
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    usable = len(batches) - len(batches) % world_size
    return batches[rank:usable:world_size]


def collate(tokens: list[list[int]], pad_id: int) -> tuple[torch.LongTensor, torch.LongTensor]:
    """→ x0 [B, L_max] padded with ``pad_id``, lengths [B]."""
    lengths = torch.tensor([len(t) for t in tokens])
    x0 = torch.full((len(tokens), int(lengths.max())), pad_id, dtype=torch.long)
    for i, t in enumerate(tokens):
        x0[i, :len(t)] = torch.tensor(t)
    return x0, lengths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sedd.data", description="Write the training/validation split "
                                "that sedd.train makes, as train.fasta and val.fasta.")
    p.add_argument("--data", type=FILE, required=True, help="the full training FASTA")
    p.add_argument("--clusters", type=FILE,
                   help="cluster<TAB>member TSV: hold out whole clusters (as sedd.train --clusters)")
    p.add_argument("--val-fraction", type=float, default=0.05, help="share of the sequences held out (default 0.05)")
    p.add_argument("--seed", type=SEED, default=0, help="the split's seed (sedd.train --seed; default 0)")
    p.add_argument("--max-len", type=MODEL_LENGTH, default=MAX_LEN,
                   help="longest sequence kept, as in training (sedd.train --max-len; default %(default)s)")
    p.add_argument("--alphabet", type=ALPHABET, default=PROTEIN,
                   help="residue characters, as in training (sedd.train --alphabet; default: the 20 amino acids)")
    p.add_argument("--out", required=True, type=FOLDER, help="folder for train.fasta and val.fasta")
    a = p.parse_args(argv)
    try:
        written = {name: Path(a.out) / name for name in ("train.fasta", "val.fasta")}
        for path in written.values():                   # before reading and splitting, not after
            ckpt.check_writable(path, "--out")
        refuse_overwriting_inputs({f"--out's {name}": path for name, path in written.items()},
                                  {"--data": a.data, "--clusters": a.clusters})
        data = read_fasta(a.data, a.alphabet, max_len=a.max_len)
        if data.num_dropped:
            print(f"note: {describe_dropped(data)} (maximum length {a.max_len})", file=sys.stderr)
        clusters = read_clusters(a.clusters) if a.clusters else None
        with one_line_warnings():                   # the no-clusters warning
            train, val = split(data, a.val_fraction, a.seed, clusters)
        for name, part in (("train.fasta", train), ("val.fasta", val)):
            write_fasta(written[name], [a.alphabet.decode(t) for t in part.tokens], part.ids)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {written['train.fasta']} ({len(train)} sequences) and {written['val.fasta']} ({len(val)})")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
