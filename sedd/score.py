"""Ask the model about a sequence: whole-sequence score, masked marginals, mutation scans, variant tables.

    python -m sedd.score --sequence MSTARPLKSVDYEVFGRVQGVFFRK... --scan --json
    python -m sedd.score --fasta designs.fasta
    python -m sedd.score --sequence WT --mutations variants.csv --out scored.csv     # --out -: standard output

Whole-sequence score (DESIGN decision 12). The ELBO bound on −log p(x | length) in nats per residue,
from the one estimator ``sedd.likelihood.elbo_to_precision`` run on this sequence alone (so a
sequence's score does not depend on the others in a file): K stratified times, as many as a pilot
of ``ELBO_PILOT_T_SAMPLES`` predicts the per-residue standard error needs to fall below
``ELBO_TARGET_STDERR``, at least ``ELBO_T_SAMPLES`` and at most ``ELBO_MAX_T_SAMPLES``.
Deterministic for a given seed on the CPU. Lower is more family-like.

Masked marginals. For a set S of positions, x_S̄ = the sequence with the positions in S masked;
the network gives log p_θ(x_i = b | x_S̄) for every i ∈ S and residue b in one forward. With
S = {i} for i = 1…L (one batched pass of L rows):
- per-residue log-probability  ℓ_i = log p_θ(x_i = wt_i | x_{−i});
- pseudo-log-likelihood per residue (as nats, like the ELBO)  PLL = −(1/L) Σ_i ℓ_i;
- single-substitution scan  scan[i][b] = log p_θ(b | x_{−i}) − ℓ_i  (exactly 0 at b = wt_i).
A multi-mutant m = {(i, wt_i → mt_i)} with sites S is scored with all of S masked at once
(the masked-marginal score of Meier et al. 2021, "Language models enable zero-shot prediction of
the effects of mutations on protein function"):
    score(m) = Σ_{i∈S} log p_θ(mt_i | x_S̄) − log p_θ(wt_i | x_S̄),
so a single mutant's score equals its scan cell. Variant tables use ProteinGym's layout: a
``mutant`` column of ``A23V`` or ``A23V:G45K`` (1-based positions; the wild-type letter is checked).

Family percentile. ``family_distribution`` stores quantiles of the per-sequence ELBO/residue of a
checkpoint's validation sequences (same estimator, ``FAMILY_T_SAMPLES`` times per sequence, so its
Monte Carlo noise is of the same size as a single score's); ``sedd.evaluate`` writes it into the
evaluation block of ``config.json`` under ``"score_distribution"``. A sequence's percentile is the
share of those sequences with a worse (higher) ELBO, interpolated between the stored quantiles.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .cli import SEED, refuse_overwriting_inputs, run
from .data import Dataset, fasta_file_text, fasta_spans, not_utf8, without_comments
from .likelihood import elbo_to_precision, estimate_elbo
from .model import device_of, eval_mode

ELBO_T_SAMPLES = 64          # the fewest times: one forward of 64 copies of the sequence
ELBO_PILOT_T_SAMPLES = 16    # times that only predict how many the target needs (elbo_to_precision)
ELBO_TARGET_STDERR = 0.05    # nats/residue; 184 times for human ACYP1 (docs/benchmarks.md, Scoring)
ELBO_MAX_T_SAMPLES = 256
FAMILY_T_SAMPLES = 64
FAMILY_MAX_SEQS = 512
DISTRIBUTION_KEY = "score_distribution"
QUANTILES_KEY = "elbo_nats_per_residue_quantiles"
ROWS_PER_PASS = 256          # rows of one network call; a scan of L ≤ 256 is one pass


# ---- input ----------------------------------------------------------------------------------------------
def parse_sequence(model: ckpt.Checkpoint, text: str) -> list[int]:
    """A full sequence → residue ids, by the template rules (header, digits, spaces, trailing *).

    Designed positions (``_ ? # X`` or brackets, even ``[0]``) are refused: a score needs every residue.
    """
    empty = f"the sequence is empty: give 1 to {model.max_len} residues"
    if not text.strip():
        raise ValueError(empty)
    try:
        spec = model.alphabet.parse_spec(text, model.max_len, full=True)
    except ValueError as e:                 # the template parser's words, said of a sequence
        message = str(e).replace(model.alphabet.allowed_text(), model.alphabet.allowed_text(designing=False))
        raise ValueError(empty if message.startswith("template is empty")
                         else re.sub(r"^template\b", "the sequence", message)) from None
    template = spec.fixed()
    masked = [i + 1 for i, d in enumerate(template.designed) if d]
    if masked:              # residue numbers: with spaces or digits in the text they are not its positions
        shown = ", ".join(map(str, masked[:10])) + (" …" if len(masked) > 10 else "")
        what = (f"residue {shown} is" if len(masked) == 1 else f"{len(masked)} residues ({shown}) are")
        raise ValueError(f"scoring needs a full sequence, but {what} designed or masked; write residues in place "
                         f"of {' '.join(model.alphabet.mask_chars)}")
    return list(template.tokens)


# ---- masked marginals -------------------------------------------------------------------------------------
@torch.no_grad()
def masked_log_probs(model: ckpt.Checkpoint, tokens: list[int], site_sets: list[list[int]],
                     rows_per_pass: int = ROWS_PER_PASS) -> list[torch.Tensor]:
    """log p_θ(x_i = b | x with the sites S masked) for each S in ``site_sets`` (0-based positions).

    One row per site set, ``rows_per_pass`` rows per network call. Returns one float64 tensor
    [|S|, V] per set, rows in the order of S.
    """
    net = model.model
    device = device_of(net)
    x = torch.tensor(tokens, dtype=torch.long, device=device)
    out: list[torch.Tensor] = []
    with eval_mode(net):                     # dropout off: the same sequence always scores the same
        for start in range(0, len(site_sets), rows_per_pass):
            chunk = site_sets[start:start + rows_per_pass]
            rows = x.repeat(len(chunk), 1)                                      # [R, L]
            for r, sites in enumerate(chunk):
                rows[r, list(sites)] = model.alphabet.mask_id
            log_p = torch.log_softmax(net(rows).double(), dim=-1).cpu()        # [R, L, V]
            out.extend(log_p[r, list(sites)] for r, sites in enumerate(chunk))
    return out


def masked_marginals(model: ckpt.Checkpoint, tokens: list[int]) -> torch.Tensor:
    """[L, V] float64: row i = log p_θ(x_i = · | x with only i masked)."""
    return torch.cat(masked_log_probs(model, tokens, [[i] for i in range(len(tokens))]))


def scan_from_marginals(marginals: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """[L, V]: scan[i][b] = marginals[i][b] − marginals[i][wt_i]; the wild-type cell is exactly 0."""
    wild = marginals.gather(1, torch.tensor(tokens).view(-1, 1))
    return marginals - wild


# ---- whole-sequence score ---------------------------------------------------------------------------------
def elbo_score(model: ckpt.Checkpoint, tokens: list[int], seed: int = 0, target_stderr: float = ELBO_TARGET_STDERR,
               max_t_samples: int = ELBO_MAX_T_SAMPLES) -> tuple[float, float]:
    """(ELBO, standard error) in nats/residue of one sequence (module docstring)."""
    result = elbo_estimate(model, tokens, seed, target_stderr, max_t_samples)
    return result["elbo_nats_per_residue"], result["elbo_stderr"]


def elbo_estimate(model: ckpt.Checkpoint, tokens: list[int], seed: int = 0, target_stderr: float = ELBO_TARGET_STDERR,
                  max_t_samples: int = ELBO_MAX_T_SAMPLES) -> dict:
    """``elbo_score``'s estimate whole: ``elbo_to_precision``'s result, with the times it drew."""
    return elbo_to_precision(model.model, Dataset(["sequence"], [list(tokens)]), model.schedule,
                             model.alphabet.mask_id, t_samples=min(ELBO_T_SAMPLES, max_t_samples),
                             target_stderr=target_stderr, max_t_samples=max_t_samples, seed=seed,
                             pad_id=model.alphabet.pad_id, pilot_t_samples=ELBO_PILOT_T_SAMPLES)


def score_sequence(model: ckpt.Checkpoint, tokens: list[int], name: str = "sequence", seed: int = 0,
                   scan: bool = False) -> dict:
    """One entry of the ``sedd.score --json`` ``"sequences"`` list (DESIGN.md, CLI contract)."""
    elbo, stderr = elbo_score(model, tokens, seed)
    marginals = masked_marginals(model, tokens)
    per_residue = marginals.gather(1, torch.tensor(tokens).view(-1, 1)).squeeze(1)      # ℓ_i, [L]
    entry = {"name": name, "sequence": model.alphabet.decode(tokens), "length": len(tokens),
             "elbo_nats_per_residue": elbo, "elbo_stderr": stderr,
             "pll_nats_per_residue": -per_residue.mean().item(),
             "per_residue_log_prob": per_residue.tolist()}
    if scan:
        entry["scan"] = {"residues": model.alphabet.residues,
                         "scores": scan_from_marginals(marginals, tokens).tolist()}
    return entry


def scan_csv(entry: dict) -> str:
    """The scan of a ``score_sequence`` entry as CSV: position (1-based), wild type, one column per residue."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["position", "wild_type", *entry["scan"]["residues"]])
    for i, (wt, row) in enumerate(zip(entry["sequence"], entry["scan"]["scores"]), start=1):
        writer.writerow([i, wt, *(f"{v:.4f}" for v in row)])
    return out.getvalue()


def top_substitutions(entry: dict, n: int = 20) -> list[tuple[str, float]]:
    """The ``n`` highest-scoring single substitutions of a scanned entry: (``A23V``, score), best first."""
    scores = torch.tensor(entry["scan"]["scores"])
    residues, wild = entry["scan"]["residues"], entry["sequence"]
    scores[torch.arange(len(wild)), torch.tensor([residues.index(c) for c in wild])] = -math.inf
    values, flat = scores.flatten().topk(min(n, scores.numel() - len(wild)))
    V = len(residues)
    return [(f"{wild[k // V]}{k // V + 1}{residues[k % V]}", v) for k, v in zip(flat.tolist(), values.tolist())]


# ---- multi-mutants (ProteinGym layout) --------------------------------------------------------------------
def parse_mutant(text: str, sequence: str, residues: str) -> list[tuple[int, int, int]]:
    """``A23V:G45K`` → [(position 0-based, wild-type id, mutant id), …]; a ``ValueError`` says what is wrong."""
    sites = []
    for part in text.strip().split(":"):
        part = part.strip()
        digits = part[1:-1]
        # isdigit() passes '²', int() does not; 'Y12' and '12G' lack a residue, not a position 1 or 2
        if len(part) < 3 or not (digits.isascii() and digits.isdigit()) or part[0].isdigit() or part[-1].isdigit():
            raise ValueError(f"mutation {part!r} is not of the form A23V (wild type, 1-based position, mutant)")
        wt, pos, mt = part[0], int(digits), part[-1]
        if residues.isupper():      # 'a23v' is A23V in a protein; an alphabet with lower-case letters keeps case
            wt, mt = wt.upper(), mt.upper()
        if not 1 <= pos <= len(sequence):
            raise ValueError(f"mutation {part!r}: position {pos} is outside the sequence (1 to {len(sequence)})")
        if sequence[pos - 1] != wt:
            raise ValueError(f"mutation {part!r}: position {pos} is {sequence[pos - 1]!r} in the sequence, not {wt!r}")
        if mt not in residues:
            raise ValueError(f"mutation {part!r}: {mt!r} is not a residue of the alphabet {residues}")
        if any(p == pos - 1 for p, _, _ in sites):
            raise ValueError(f"mutation {part!r}: position {pos} is mutated twice")
        sites.append((pos - 1, residues.index(wt), residues.index(mt)))
    return sites


def mutant_scores(model: ckpt.Checkpoint, tokens: list[int], mutants: list[list[tuple[int, int, int]]]) -> list[float]:
    """Σ_{i∈S} log p_θ(mt_i | x_S̄) − log p_θ(wt_i | x_S̄) per mutant, all of its sites S masked at once.

    One network row per distinct site set: a table of every substitution at a site (a scan's
    layout) costs one row per site, not one per variant."""
    keys = [tuple(sorted(pos for pos, _, _ in m)) for m in mutants]
    distinct = list(dict.fromkeys(keys))
    log_ps = dict(zip(distinct, masked_log_probs(model, tokens, [list(sites) for sites in distinct])))
    return [sum(log_ps[sites][sites.index(pos), mt].item() - log_ps[sites][sites.index(pos), wt].item()
                for pos, wt, mt in m) for m, sites in zip(mutants, keys)]


@dataclass
class Variants:
    """A ProteinGym-style CSV read and checked against its wild type: its columns, its rows and each
    row's mutant as ``parse_mutant`` gives it."""

    fields: list[str]
    rows: list[dict]
    mutants: list[list[tuple[int, int, int]]]


MISSING = ("", "NA", "N/A", "nan")          # a DMS_score cell of an unmeasured variant (any case)
MISSING_LOWER = frozenset(m.lower() for m in MISSING)


def is_missing(cell: str | None) -> bool:
    return (cell or "").strip().lower() in MISSING_LOWER


# a decimal number in ASCII: float() alone also reads '1_5' as 15 and '٣' as 3
NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
# the same with a decimal comma, as a semicolon-separated export writes it (where no comma separates cells)
DECIMAL_COMMA = re.compile(r"\s*[+-]?[0-9]*,[0-9]+(?:[eE][+-]?[0-9]+)?\s*")
SEPARATOR_NAMES = {",": "comma", "\t": "tab", ";": "semicolon"}


def measurement(cell: str | None) -> float | None:
    """A DMS_score cell as a finite number, or None where it holds none (blank, NA, nan, inf or text)."""
    if cell is None or not NUMBER.fullmatch(cell):
        return None
    value = float(cell)
    return value if math.isfinite(value) else None         # 1e400 is inf


def read_variants(csv_in: str | Path, sequence: str, residues: str) -> Variants:
    """The variants of ``csv_in`` (a ``mutant`` column of ``A23V`` or ``A23V:G45K``), every one checked
    against ``sequence``; a ``ValueError`` names the file and the line at fault. Needs no model, so a
    bad table is refused before anything is scored."""
    numbered, read_to, delimiter, above = [], 0, ",", 0
    try:
        with open(csv_in, newline="", encoding="utf-8-sig") as f:     # -sig: a spreadsheet's byte-order mark
            at, header = f.tell(), f.readline()
            while header and not header.strip():        # blank lines above the header: the header is below
                above += 1
                at, header = f.tell(), f.readline()
            delimiter = _delimiter(header)
            f.seek(at)
            # strict: a quote left open is an error, not a cell that swallows every line after it
            reader = csv.DictReader(f, delimiter=delimiter, strict=True)
            fields = [name.strip() for name in reader.fieldnames or []]   # 'mutant, DMS_score' names DMS_score
            reader.fieldnames = fields
            read_to = above + reader.line_num                         # the header's last line
            for row in reader:       # each row with its first line in the file (blank lines are skipped)
                breaks = sum(value.count("\n") for value in row.values() if isinstance(value, str))
                numbered.append((above + reader.line_num - breaks, row))
                read_to = above + reader.line_num
    except UnicodeDecodeError as e:
        raise ValueError(not_utf8(csv_in, "--mutations file", e)) from None
    except csv.Error as e:
        raise ValueError(f"{csv_in}, from line {read_to + 1}: {e}; is a quote (\") left open? A value that holds a "
                         f"{SEPARATOR_NAMES[delimiter]} or a line break is quoted whole, and a quote inside it is "
                         "doubled (\"\")") from None
    if "sedd_score" in fields:                     # writing the table back would replace those scores
        raise ValueError(f"{csv_in} already has a sedd_score column (a table scored before?); rename that column, "
                         "or give the table without it, so its scores are not overwritten")
    if "mutant" not in fields:
        raise ValueError(f"{csv_in} has no 'mutant' column (columns: {', '.join(map(repr, fields)) or 'none'}); "
                         "expected ProteinGym's layout with mutants like A23V or A23V:G45K")
    if fields.count("") > 1:                      # a spreadsheet's export of empty columns: 'mutant,DMS_score,,'
        raise ValueError(f"{csv_in}: the header has {fields.count('')} columns without a name; remove the empty "
                         "columns or name each of them")
    twice = sorted({name for name in fields if fields.count(name) > 1})
    if twice:                                    # DictReader keeps the last column of a name, silently
        raise ValueError(f"{csv_in}: the header names {', '.join(map(repr, twice))} more than once (spaces around "
                         "names aside); give each column its own name")
    if not numbered:
        raise ValueError(f"{csv_in} has a header but no variants")
    mutants = []
    for line, row in numbered:
        if None in row:                              # DictReader's key for fields beyond the header's
            raise ValueError(f"{csv_in}, line {line}: {len(fields) + len(row[None])} fields, but the header has "
                             f"{len(fields)} ({', '.join(fields)}); quote a value that holds a "
                             f"{SEPARATOR_NAMES[delimiter]}")
        broken = next((name for name in ("mutant", "DMS_score") if "\n" in (row.get(name) or "")), None)
        if broken:       # a quote opened in the cell and closed lines later: the lines between are in it
            raise ValueError(f"{csv_in}, line {line}: the {broken} cell holds a line break (a quote left open "
                             f"before it?): {row[broken][:40]!r}")
        try:
            mutants.append(parse_mutant(row["mutant"] or "", sequence, residues))
        except ValueError as e:
            raise ValueError(f"{csv_in}, line {line} (mutant {row['mutant']!r}): {e}") from None
        if delimiter == ";" and DECIMAL_COMMA.fullmatch(row.get("DMS_score") or ""):
            row["DMS_score"] = row["DMS_score"].replace(",", ".")      # a European spreadsheet's -0,52
        if "DMS_score" in row and measurement(row["DMS_score"]) is None and not is_missing(row["DMS_score"]):
            raise ValueError(f"{csv_in}, line {line}: DMS_score {row['DMS_score']!r} is not a finite number; leave it "
                             f"blank (or {', '.join(MISSING[1:])}) where the variant was not measured")
    return Variants(fields, [row for _, row in numbered], mutants)


def _delimiter(header: str) -> str:
    """The table's separator: a comma, or the tab or semicolon that a TSV or a European spreadsheet's
    export puts between the header's names, where that separator, not the comma, finds a 'mutant' column."""
    for delimiter in (",", "\t", ";"):
        if "mutant" in (name.strip() for name in next(csv.reader([header], delimiter=delimiter), [])):
            return delimiter
    return ","


STDOUT = "-"        # --out - : the scored table goes to standard output


def score_variants(model: ckpt.Checkpoint, tokens: list[int], variants: Variants, csv_out: str | Path) -> dict:
    """Score ``variants`` of the wild type ``tokens`` and write them to ``csv_out`` (atomically; ``"-"``:
    standard output) with a ``sedd_score`` column, every input column kept.

    Returns ``{"num_variants", "spearman", "num_with_dms"}``: the Spearman ρ (scipy) against
    ``DMS_score`` over the ``num_with_dms`` rows where it is a finite number, or ``None`` with fewer
    than 2 such rows or when their scores do not differ (a rank correlation is then undefined);
    without a ``DMS_score`` column both are ``None``.
    """
    scores = mutant_scores(model, tokens, variants.mutants)
    out = io.StringIO()
    fields = variants.fields
    writer = csv.DictWriter(out, fieldnames=fields + ["sedd_score"], lineterminator="\n")
    writer.writeheader()
    for row, s in zip(variants.rows, scores):
        writer.writerow({**row, "sedd_score": f"{s:.6f}"})
    if str(csv_out) == STDOUT:
        sys.stdout.write(out.getvalue())
        sys.stdout.flush()
    else:
        ckpt.atomic_write_text(Path(csv_out), out.getvalue())
    agreement = (_spearman(variants.rows, scores) if "DMS_score" in fields
                 else {"spearman": None, "num_with_dms": None})
    return {"num_variants": len(variants.rows), **agreement}


def score_mutations_csv(model: ckpt.Checkpoint, tokens: list[int], csv_in: str | Path, csv_out: str | Path) -> dict:
    """Read a ProteinGym-style CSV (``read_variants``), write it back scored (``score_variants``, which
    says what it returns)."""
    variants = read_variants(csv_in, model.alphabet.decode(tokens), model.alphabet.residues)
    return score_variants(model, tokens, variants, csv_out)


def _spearman(rows: list[dict], scores: list[float]) -> dict:
    from scipy.stats import spearmanr

    pairs = [(s, dms) for row, s in zip(rows, scores) if (dms := measurement(row["DMS_score"])) is not None]
    differ = len(pairs) >= 2 and all(len(set(column)) > 1 for column in zip(*pairs))
    rho = float(spearmanr(*zip(*pairs)).statistic) if differ else math.nan      # no ConstantInputWarning
    return {"spearman": None if math.isnan(rho) else rho, "num_with_dms": len(pairs)}   # nan: too few, or no spread


# ---- family distribution and percentile -------------------------------------------------------------------
def family_distribution(model: ckpt.Checkpoint, data: Dataset, seed: int = 0, max_seqs: int = FAMILY_MAX_SEQS,
                        t_samples: int = FAMILY_T_SAMPLES, progress: bool = False) -> dict:
    """Quantiles (0, 1, …, 100 %) of the per-sequence ELBO/residue of ``data`` (a seeded subset of ``max_seqs``)."""
    if len(data) > max_seqs:
        data = data.subset(sorted(random.Random(seed).sample(range(len(data)), max_seqs)))
    result = estimate_elbo(model.model, data, model.schedule, model.alphabet.mask_id, t_samples=t_samples,
                           seed=seed, progress=progress, pad_id=model.alphabet.pad_id)
    lengths = np.array([len(t) for t in data.tokens])
    per_residue = np.array(result["per_sequence"]) / lengths
    stderr = np.array(result["per_sequence_stderr"]) / lengths
    return {QUANTILES_KEY: np.quantile(per_residue, np.linspace(0, 1, 101)).round(4).tolist(),
            "quantile_levels_percent": "0, 1, ..., 100", "num_sequences": len(data), "t_samples": t_samples,
            "mean_sequence_stderr": round(float(stderr.mean()), 4), "seed": seed}


def family_percentile(model: ckpt.Checkpoint, elbo_per_residue: float) -> float | None:
    """Share (%) of the checkpoint's validation sequences with a higher (worse) ELBO; None if not stored.
    A stored distribution of another shape (a hand-edited config) is refused in words that name it."""
    evaluation = model.meta.get("evaluation") or {}
    dist = evaluation.get(DISTRIBUTION_KEY) if isinstance(evaluation, dict) else None
    if not dist:
        return None
    quantiles = dist.get(QUANTILES_KEY) if isinstance(dist, dict) else None
    try:
        quantiles = np.asarray(quantiles, dtype=float)
    except (TypeError, ValueError):
        quantiles = None
    if quantiles is None or quantiles.ndim != 1 or len(quantiles) < 2 or not np.isfinite(quantiles).all() \
            or (np.diff(quantiles) < 0).any():
        raise ValueError(f"the checkpoint {ckpt.shown(model.source)}'s {ckpt.CONFIG_NAME} has an evaluation."
                         f"{DISTRIBUTION_KEY} without '{QUANTILES_KEY}', a list of at least 2 numbers in "
                         "increasing order: rerun sedd.evaluate --update-config, or delete the block")
    below = np.interp(elbo_per_residue, quantiles, np.linspace(0, 100, len(quantiles)))
    return float(100.0 - below)


# ---- command line -----------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sedd.score", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="checkpoint directory or Hugging Face Hub repo id "
                                                       "(default: $SEDD_CHECKPOINT, else the bundled ACYP model)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--sequence", help="one full sequence (an optional FASTA header line, digits and spaces are ignored)")
    what.add_argument("--fasta", help="a FASTA file of full sequences (lines that start with ; are comments)")
    p.add_argument("--scan", action="store_true", help="add the single-substitution scan (L × 20)")
    p.add_argument("--mutations", help="ProteinGym-style CSV (or tab- or semicolon-separated) with a 'mutant' "
                   "column (A23V or A23V:G45K, 1-based)")
    p.add_argument("--out", help="where --mutations writes the CSV with a sedd_score column ('-': standard "
                   "output; the score table and summary then go to standard error)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the ELBO's random times (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _read_inputs(model: ckpt.Checkpoint, a: argparse.Namespace) -> list[tuple[str, list[int]]]:
    """(name, residue ids) of every record to score. An error's position, line and column count from
    the start of the text: of ``--sequence``, or of the ``--fasta`` file, whose lines a user can find."""
    if a.sequence is None:
        text = fasta_file_text(a.fasta)          # gzip or plain, UTF-8, a byte-order mark dropped
        records = fasta_spans(text)
    elif a.sequence.strip() and not without_comments(a.sequence).strip():
        raise ValueError("--sequence holds only comment lines (lines that start with ;) and no sequence")
    else:
        # one sequence given as text is parsed whole, header included, as sedd.sample and the studio parse it
        text = without_comments(a.sequence)
        records = fasta_spans(text)
        if len(records) > 1:
            print(f"note: --sequence holds {len(records)} FASTA records; scoring the first one only "
                  "(use --fasta FILE for several)", file=sys.stderr)
        records = [(records[0][0], 0, records[0][2])]
    inputs = []
    for name, start, end in records:
        try:
            inputs.append((name, parse_sequence(model, text[start:end])))
        except ValueError as e:
            reason = str(e)
            try:            # again in place: the message's position, line and column are then the whole text's
                parse_sequence(model, re.sub(r"[^\n]", " ", text[:start]) + text[start:end])
            except ValueError as in_place:
                reason = str(in_place)
            named = a.sequence is None or name != "sequence"      # a header-less --sequence has no name to repeat
            raise ValueError(f"{name}: {reason}" if named else reason) from None
    return inputs


def _read_variants(model: ckpt.Checkpoint, inputs: list[tuple[str, list[int]]], csv_in: str) -> Variants:
    """``--mutations``' table, checked against the one wild type of the input before anything is scored."""
    if len(inputs) != 1:
        raise ValueError(f"--mutations scores variants of one wild type; the input holds {len(inputs)} sequences")
    return read_variants(csv_in, model.alphabet.decode(inputs[0][1]), model.alphabet.residues)


def _table(model: ckpt.Checkpoint, entries: list[dict]) -> str:
    lines = [f"{'name':<24} {'length':>6}  {'ELBO (nats/res)':>17}  {'−PLL (nats/res)':>15}  {'family pct':>10}"]
    for e in entries:
        pct = family_percentile(model, e["elbo_nats_per_residue"])
        lines.append(f"{e['name'][:24]:<24} {e['length']:>6}  {e['elbo_nats_per_residue']:>9.3f} ± {e['elbo_stderr']:.3f}"
                     f"  {e['pll_nats_per_residue']:>15.3f}  {'–' if pct is None else f'{pct:.0f} %':>10}")
    for e in entries:
        if "scan" in e:
            residues = e["scan"]["residues"]
            lines += ["", f"scan of {e['name']}: log p(b) − log p(wild type), only that position masked",
                      f"{'pos':>4} wt " + "".join(f"{r:>6}" for r in residues)]
            lines += [f"{i:>4} {wt}  " + "".join(f"{v:>6.2f}" for v in row)
                      for i, (wt, row) in enumerate(zip(e["sequence"], e["scan"]["scores"]), start=1)]
    return "\n".join(lines)


def _mutations_line(mutations: dict, out) -> str:
    """The one-line summary of a ``--mutations`` run: where the scores went, and ρ against DMS_score."""
    def variants(n: int) -> str:
        return f"{n} variant" + ("" if n == 1 else "s")
    line = f"{variants(mutations['num_variants'])} scored → {'standard output' if out == STDOUT else out}"
    rho, with_dms = mutations["spearman"], mutations["num_with_dms"]
    if rho is not None:
        return line + f"; Spearman ρ vs DMS_score = {rho:.3f} over {variants(with_dms)}"
    if with_dms is not None:
        return line + ("; no Spearman ρ: it needs at least 2 variants with a DMS_score, and scores that differ "
                       f"(got {with_dms})")
    return line + "; no DMS_score column, so no Spearman ρ"


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    if (a.mutations is None) != (a.out is None):
        p.error("--mutations and --out go together")
    to_stdout = a.out == STDOUT
    if to_stdout and a.json:
        p.error("--out - writes the scored table to standard output, where --json prints its object; "
                "give --out a file, or leave out --json")
    try:
        if a.mutations:                 # before the scoring, not after it
            if not Path(a.mutations).is_file():
                raise ValueError(f"--mutations {a.mutations} is not a file; give a CSV with a 'mutant' column")
            if not to_stdout:
                ckpt.check_writable(a.out, "--out")
                refuse_overwriting_inputs({"--out": a.out}, {"--mutations": a.mutations, "--fasta": a.fasta})
        model = ckpt.load(a.checkpoint)
        if a.mutations and not to_stdout and Path(model.source).is_dir():     # --out config.json beside the weights
            for file in Path(model.source).iterdir():
                refuse_overwriting_inputs({"--out": a.out}, {"--checkpoint": file})
        inputs = _read_inputs(model, a)
        variants = _read_variants(model, inputs, a.mutations) if a.mutations else None
        from tqdm.auto import tqdm
        entries = [score_sequence(model, tokens, name, a.seed, a.scan)
                   for name, tokens in tqdm(inputs, desc="scoring", file=sys.stderr, disable=len(inputs) < 2)]
        table = None if a.json else _table(model, entries)      # the family percentiles: a config may refuse them
        mutations = score_variants(model, inputs[0][1], variants, a.out) if variants is not None else None
    except BrokenPipeError:
        raise                           # --out - | head: a reader that stopped early, ended quietly by cli.run
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps({"checkpoint": str(a.checkpoint or model.source), "sequences": entries}))
    else:
        print(table, file=sys.stderr if to_stdout else sys.stdout)       # stdout holds the scored CSV alone
    if mutations:
        print(_mutations_line(mutations, a.out), file=sys.stderr if a.json or to_stdout else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
