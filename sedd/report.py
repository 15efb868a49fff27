"""The evaluation report: Markdown table, samples FASTA, identity histogram, and the terminal summary."""
from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import quote

import numpy as np

from . import checkpoint as ckpt
from .design import to_fasta
from .metrics import MOTIF, binomial_stderr, wilson_interval


def _histogram(identities: list[float], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.hist(identities, bins=np.linspace(0, 1, 41), color="#4c72b0", edgecolor="white")
    if identities:
        ax.axvline(float(np.median(identities)), color="black", ls="--", lw=1, label="median")
        ax.legend(fontsize=8)
    ax.set_xlabel("identity to the nearest reference sequence")
    ax.set_ylabel("samples")
    fig.tight_layout()
    ckpt.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _link(path: Path) -> str:
    """A link destination for a file beside the report: a space or a parenthesis in a bare destination
    ends the Markdown link (``[FASTA](my eval_samples.fasta)`` is not a link), so percent-encode them."""
    return quote(path.name)


def _cell(text: str) -> str:
    """Free text (an error message) as one Markdown table cell: a ``|`` or a line break would end it."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _fold_line(fold: dict) -> tuple[str, str]:
    """The fold metric, with how many samples failed and the first failure's reason (none is lost silently)."""
    failures = fold.get("failures") or []
    failed = f", {len(failures)} failed; first: {failures[0]['error']}" if failures else ""
    return (f"{fold['folded']} folded{failed}", f"{_fmt(fold['mean_plddt'], 1)} / {_fmt(fold['mean_ptm'])}")


def _motif(stats: dict) -> str:
    return stats.get("motif", MOTIF)           # a result recorded before the pattern could be chosen: ACYP's


def _motif_absent(stats: dict) -> str:
    """A note for a family whose references never carry the motif: its rates say nothing then."""
    if stats["reference_motif_rate"] != 0:
        return ""
    return "; the references never carry it" + ("" if _motif(stats) != MOTIF else
                                                 ": --motif REGEX sets this family's")


def _fmt(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _bits(ratio: float) -> str:
    """An HMM bits ratio; −inf (null in the JSON) is a median sequence without a domain of the family."""
    return "none (most without a domain)" if ratio == -math.inf else _fmt(ratio)


def _rate(stats: dict, key: str) -> str:
    """A share of the samples with its binomial standard error, e.g. ``0.824 ± 0.024``; at 0 or 1, where
    that error is 0, its 95 % Wilson interval instead: ``1.000 (95 % interval 0.985–1.000)`` for 256."""
    rate, n = stats[key], stats["num_samples"]
    if rate in (0, 1):
        low, high = wilson_interval(round(rate * n), n)
        return f"{rate:.3f} (95 % interval {low:.3f}–{high:.3f})"
    return f"{rate:.3f} ± {binomial_stderr(rate, n):.3f}"


def _data_line(result: dict) -> str:
    counts = f"{result['num_sequences']} sequences, {result['num_residues']} residues"
    split = result.get("split")
    if not split:
        return f"Held-out data: `{result['data']}` — {counts}."
    return (f"Held-out data: the part of `{result['data']}` that training held out — whole clusters of "
            f"`{split['clusters']}` (seed {split['seed']}) until at least {split['val_fraction']:.0%} of the "
            f"sequences: {split['held_out_sequences']} sequences in {split['held_out_clusters']} clusters "
            f"({counts} evaluated); the other {split['reference_sequences']} sequences are the reference.")


def report_files(path: str | Path, with_samples: bool) -> dict[str, str]:
    """The files ``write_report`` writes for a report at ``path`` (known before it runs)."""
    path = Path(path)
    files = {"samples_fasta": str(path.with_name(f"{path.stem}_samples.fasta")),
             "identity_histogram": str(path.with_name(f"{path.stem}_identity.png"))} if with_samples else {}
    return {**files, "report": str(path)}


def _kl_floor(stats: dict) -> str:
    """What the composition KL of as many residues drawn from the data would be (older results lack it)."""
    if "composition_kl_floor" not in stats:
        return ""
    return f" (≈ {_fmt(stats['composition_kl_floor'], 4)} from sampling alone at this size)"


def write_report(path: str | Path, result: dict, samples: list[str] | None = None,
                 identities: list[float] | None = None) -> dict[str, str]:
    """Markdown report at ``path``; with samples also ``<stem>_samples.fasta`` and ``<stem>_identity.png`` beside it."""
    path = Path(path)
    written: dict[str, str] = {}
    lines = [f"# Evaluation of `{result['checkpoint']}`", "", _data_line(result), "",
             "| metric | value |", "|---|---|",
             f"| ELBO, −log p(residues \\| length) | {_fmt(result['elbo_nats_per_residue'])} ± "
             f"{_fmt(result['elbo_stderr'])} nats/residue (± the Monte Carlo error of K = {result['t_samples']} "
             f"t samples per sequence on these sequences, not the spread over held-out sets"
             f"{'' if result['elbo_target_met'] else '; target error not reached'}) |",
             "| −log p(length) | " + ("not known (the checkpoint stores no length histogram)"
                                      if result['length_nats_per_residue'] is None
                                      else f"{_fmt(result['length_nats_per_residue'])} nats/residue") + " |",
             f"| unigram floor: held-out residues under {result['unigram_reference']} | "
             f"{_fmt(result['unigram_nats_per_residue'])} nats/residue |",
             f"| infill recovery ({result['infill_fraction']:.0%} masked) | {_fmt(result['infill_recovery'])} "
             f"({result['infill_masked_residues']} masked residues) |"]
    sample_stats = result.get("samples")
    if sample_stats and samples is not None:
        names = report_files(path, with_samples=True)
        fasta, png = Path(names["samples_fasta"]), Path(names["identity_histogram"])
        ckpt.atomic_write_text(fasta, to_fasta(samples, prefix="sample"))
        _histogram(identities or [], png)
        written.update(samples_fasta=str(fasta), identity_histogram=str(png))
        lines += [f"| samples | {sample_stats['num_samples']} ([FASTA]({_link(fasta)})) |",
                  f"| validity | {_fmt(sample_stats['validity'])} |",
                  f"| novelty (not identical to a reference) | {_fmt(sample_stats['novelty'])} |",
                  f"| median identity to nearest reference | {_fmt(sample_stats['median_nearest_identity'])} |",
                  f"| mean pairwise identity ({sample_stats['pairs']} pairs) | "
                  f"{_fmt(sample_stats['mean_pairwise_identity'])} |",
                  f"| composition KL(data ‖ samples) | {_fmt(sample_stats['composition_kl'], 4)} nats{_kl_floor(sample_stats)} |",
                  f"| motif `{_motif(sample_stats)}` rate ± binomial SE (references) | "
                  f"{_rate(sample_stats, 'motif_rate')} ({_fmt(sample_stats['reference_motif_rate'])}"
                  f"{_motif_absent(sample_stats)}) |",
                  f"| longest single-residue run: mean / max; share ≥ {sample_stats['repeat_run']} | "
                  f"{_fmt(sample_stats['mean_longest_run'], 2)} / {sample_stats['max_longest_run']}; "
                  f"{_fmt(sample_stats['repeat_rate'])} |"]
        family = sample_stats.get("family_hmm")
        if family:
            lines.append(f"| family HMM: hit rate (E ≤ {family['hit_evalue']:g}) / bits ratio to held-out; shuffled | "
                         f"{_fmt(family['hit_rate'])} / {_bits(family['bits_ratio'])}; "
                         f"{_fmt(family['shuffled']['hit_rate'])} / {_bits(family['shuffled']['bits_ratio'])} |")
    fold = result.get("fold")
    if fold:
        lines.append(f"| ESMFold | {_cell(fold['error'])} |" if "error" in fold else
                     "| ESMFold mean pLDDT / pTM ({}) | {} |".format(*map(_cell, _fold_line(fold))))
    if "identity_histogram" in written:
        lines += ["", f"![identity to the nearest reference]({_link(Path(written['identity_histogram']))})"]
    identity = ""
    if sample_stats:    # a result recorded before the search was named was found among the 20 best by 3-mers
        search = sample_stats.get("nearest_search", "the 20 references sharing the most 3-mers")
        scoring = sample_stats.get("identity_scoring", "BLOSUM62")    # a result recorded before it was named
        identity = (" Identity = identical aligned pairs / length of the shorter sequence (global alignment, "
                    f"{scoring}); the nearest reference is searched among {search}.")
    lines += ["", f"Seed {result['seed']}.{identity} Full definitions: `sedd/evaluate.py` (module docstring).", ""]
    ckpt.atomic_write_text(path, "\n".join(lines))
    written["report"] = str(path)
    return written


def summary(result: dict) -> str:
    lines = [f"ELBO             {result['elbo_nats_per_residue']:.4f} ± {result['elbo_stderr']:.4f} nats/residue "
             f"(± Monte Carlo error, K = {result['t_samples']}; {result['num_sequences']} sequences, "
             f"{result['num_residues']} residues)",
             f"−log p(length)   {_fmt(result['length_nats_per_residue'], 4)} nats/residue"
             if result["length_nats_per_residue"] is not None else
             "−log p(length)   not known (the checkpoint stores no length histogram)",
             f"unigram floor    {result['unigram_nats_per_residue']:.4f} nats/residue ({result['unigram_reference']})",
             f"infill recovery  {result['infill_recovery']:.4f} ({result['infill_masked_residues']} masked residues)"]
    s = result.get("samples")
    if s:
        lines.append(f"samples          {s['num_samples']}: validity {s['validity']:.3f}, novelty {_fmt(s['novelty'])}, "
                     f"median nearest identity {_fmt(s['median_nearest_identity'])}, mean pairwise identity "
                     f"{_fmt(s['mean_pairwise_identity'])}, composition KL {_fmt(s['composition_kl'], 4)}{_kl_floor(s)}, "
                     f"motif {_motif(s)} rate {_rate(s, 'motif_rate')} (references {s['reference_motif_rate']:.3f}"
                     f"{_motif_absent(s)}), "
                     f"repeat rate {s['repeat_rate']:.3f}")
        if s.get("family_hmm"):
            f = s["family_hmm"]
            lines.append(f"family HMM       hit rate {f['hit_rate']:.3f}, bits ratio {_bits(f['bits_ratio'])} "
                         f"(shuffled control {f['shuffled']['hit_rate']:.3f}, {_bits(f['shuffled']['bits_ratio'])})")
    fold = result.get("fold")
    if fold:
        lines.append(f"fold             {fold['error']}" if "error" in fold else
                     "fold             {}: mean pLDDT / pTM {}".format(*_fold_line(fold)))
    return "\n".join(lines)


def json_safe(value):
    """NaN/inf → None, so the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


