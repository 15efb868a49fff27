"""Likelihood, infill and sample-quality metrics, and ``python -m sedd.evaluate``.

    python -m sedd.evaluate --checkpoint DIR --data heldout.fasta --json
    python -m sedd.evaluate --checkpoint DIR --data heldout.fasta --samples 256 --reference train.fasta \
        --report eval/report.md [--fold]
    python -m sedd.evaluate --checkpoint DIR --data family.fasta --clusters clusters.tsv --samples 256 \
        --report DIR/eval/report.md --update-config      # rebuild the held-out split; record the result

Held-out data. ``--data`` is the held-out FASTA; or, with ``--clusters``, the full FASTA the model
was trained on, and the held-out part is rebuilt exactly as training built it:
``sedd.data.split(read_fasta(data, max_len), --val-fraction, --split-seed, clusters)`` (whole
clusters until the fraction of *sequences* is reached); the training part is then the reference.

ELBO: ``sedd.likelihood.elbo_to_precision`` (the estimator, its standard error, and how a pilot
predicts how many t samples the error needs to fall below ``--target-stderr``, are documented there). The error
is the Monte Carlo error of the estimate on these sequences: it says how well the ELBO of this
held-out set is known, which is what comparing models on one split needs, not how much another
held-out set of the family would differ (a bootstrap over the held-out clusters would say that,
and with a hundred or so clusters it is many times larger).
−log p(length) is reported separately (``length_nll``): the model is conditional on the length.
``score_distribution``: quantiles of the per-sequence ELBO/residue (64 times per sequence, at most
512 sequences), which ``sedd.score`` reads to place a sequence among the family (a percentile).
Unigram floor: cross-entropy of the held-out residues under the reference composition
(``likelihood.unigram_nll``), or the held-out data's own composition when there is no reference.

Infill recovery. In every sequence round(0.3 n) positions (Python's round, halves to even: 4 of 15;
at least one) are chosen uniformly
without replacement with a seeded generator, masked, and infilled once by the default sampler
(``sedd.design.Request``: 128 steps, temperature 1, cache on); recovery = exactly restored masked
residues / all masked residues, pooled over sequences.

Sample metrics (``--samples N --reference FASTA``); lengths drawn from the checkpoint's histogram.
- validity: share of samples made only of the alphabet's residues (no mask, nothing else);
- novelty: share of valid samples not identical to any reference sequence;
- identity(a, b): global alignment (Needleman–Wunsch, biotite ``align_optimal``), BLOSUM62,
  affine gaps open −10 / extend −1, end gaps free; identity = identical aligned pairs /
  min(len a, len b), of the optimal alignment with the most identical pairs when several score
  the same (so identity(a, b) = identity(b, a)). Nearest-reference identity is the maximum over
  the references — searched approximately: the references are ranked twice, by shared distinct
  3-mers / min(distinct 3-mers of either) and by identical residues on the best ungapped diagonal
  / min(len a, len b), and the top 100 of each are aligned (an exhaustive search of ~25k
  references × 256 samples does not fit a CPU budget; on 8 of the bundled model's samples this
  finds the exhaustive maximum for 7, 0.0014 low on average, where the top 20 by 3-mers alone, used
  before, found it for 4, 0.0195 low: ``benchmarks/nearest_search.py``; a sequence with an
  identical reference gets 1.0 directly). Reported as the
  median over valid samples and drawn as a histogram;
- mean pairwise identity among samples (lower = more diverse): all pairs, or a seeded random
  subset of 2,000 pairs when there are more;
- composition KL: KL(data ‖ samples) = Σ_a p_data(a) log(p_data(a)/p_samples(a)) in nats over the
  alphabet's residues, each distribution from residue counts + 1 (Laplace smoothing, so the KL is
  finite when a residue never occurs in the samples). It is biased up by about (V − 1)/(2N) for N
  sample residues, so ``composition_kl_floor``, what as many residues drawn from the data itself
  score, is reported beside it (256 ACYP samples: ≈ 0.0004);
- motif rate: share of samples matching the regex ``--motif`` anywhere (by default ACYP's catalytic
  motif ``G.VQG[VI].[FY]R``, 92 % in nature); the same rate on the references is reported beside it,
  with a note when they never carry it (another family: give its motif).
- family membership (``sedd/hmm.py``): with a profile HMM (``--hmm``, or ``family.hmm`` beside the
  checkpoint, left out with a warning when the held-out sequences are not its family), the
  samples' hit rate at E ≤ 1e-5 and median bit score / that of the held-out ``--data`` sequences,
  and the same for each sample's residues shuffled (a control that scores ≈ 0);
- low complexity: the longest single-residue run per sample (mean, maximum) and the share of
  samples with a run of 5 or more (``repeat_rate``).
``--fold``: mean pLDDT (0–100) and pTM per sample from ``sedd.fold.ESMFoldBackend`` (on ``--device`` when
it is given, else on the first GPU there is, else the CPU); when it cannot
run (no weights, no network) its message is reported as ``"fold": {"error": ...}`` and the
other metrics stand.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from . import checkpoint as ckpt
from .cli import COUNT, FILE, REGEX, SEED, TWO_OR_MORE, one_line_warnings, refuse_overwriting_inputs, run
from .data import Dataset, describe_dropped, read_clusters, read_fasta, split
from .fold import check_foldable
from .hmm import HMM_NAME, check_file as check_hmm_file, family_metrics, load as load_hmm, natural_scores
from .likelihood import elbo_to_precision, length_nll, unigram_nll
from .metrics import MOTIF, draw_samples, fold_metrics, infill_recovery, sample_metrics
from .report import json_safe, report_files, summary, write_report
from .score import DISTRIBUTION_KEY, family_distribution
from .train import TrainConfig


# ---- command line ------------------------------------------------------------------------------------
SPLIT_DEFAULTS = {"val_fraction": TrainConfig.val_fraction, "split_seed": TrainConfig.seed}    # training's split


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sedd.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="checkpoint directory or Hub repo id "
                                                       "(default: $SEDD_CHECKPOINT, else the bundled ACYP model)")
    p.add_argument("--data", type=FILE, required=True, help="held-out FASTA (with --clusters: the full training FASTA)")
    p.add_argument("--clusters", type=FILE,
                   help="cluster<TAB>member TSV: evaluate on the cluster-held-out part of --data that training "
                        "split off (the rest is the reference)")
    p.add_argument("--val-fraction", type=float,
                   help=f"with --clusters: training's validation fraction (default {SPLIT_DEFAULTS['val_fraction']})")
    p.add_argument("--split-seed", type=SEED,
                   help=f"with --clusters: training's --seed (default {SPLIT_DEFAULTS['split_seed']})")
    p.add_argument("--max-seqs", type=COUNT, help="evaluate a seeded random subset of N sequences")
    p.add_argument("--seed", type=SEED, default=0, help="seeds the times, masks and samples (default 0)")
    p.add_argument("--t-samples", type=TWO_OR_MORE, default=4,
                   help="t samples per sequence in the pilot that predicts how many the target error needs, and the "
                        "fewest then drawn (in rounds of at most 64; default 4)")
    p.add_argument("--target-stderr", type=float, default=0.01,
                   help="draw as many t samples as the pilot predicts the ELBO's error needs to fall below this "
                        "(nats/residue; default 0.01)")
    p.add_argument("--max-t-samples", type=TWO_OR_MORE, default=1024, help="draw at most this many t samples (default 1024)")
    p.add_argument("--infill-fraction", type=float, default=0.3,
                   help="fraction of each held-out sequence masked for the infill recovery (default 0.3)")
    p.add_argument("--batch-size", type=COUNT, default=64,
                   help="sequences per infill batch (default 64); --samples are drawn in batches of this or "
                        "128, whichever is more (batch b is seeded seed + b, so the batches decide the samples: "
                        "128 is what the stored figures were drawn with)")
    p.add_argument("--samples", type=COUNT, help="draw N unconditional samples and score them (needs --reference)")
    p.add_argument("--reference", help="FASTA of reference (training) sequences for the sample metrics and the "
                                       "unigram floor (default with --clusters: the training part)")
    p.add_argument("--motif", type=REGEX, default=MOTIF,
                   help="regular expression of the family's conserved motif, for the samples' motif rate "
                        "(default: the ACYP catalytic motif %(default)s)")
    p.add_argument("--hmm", help=f"family profile HMM for the sample metrics (default: {HMM_NAME} beside the checkpoint, if there)")
    p.add_argument("--fold", action="store_true", help="fold the samples with ESMFold (mean pLDDT, pTM), on --device "
                                                       "when given, else on the first GPU there is, else the CPU")
    p.add_argument("--report", help="write a Markdown report here (samples FASTA and histogram PNG beside it)")
    p.add_argument("--update-config", action="store_true",
                   help="write the result as the 'evaluation' block of the checkpoint's config.json (atomically)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the model on the CPU, --fold on the first GPU "
                                    "there is)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Refuse bad arguments before the minutes of ELBO, infill and sampling work, not after them.

    Argument mistakes exit through ``p.error`` (usage and message); a missing file or folder, an
    unwritable output or an absent device raise ValueError, which ``main`` reports on one line.
    Fills in the split's defaults.
    """
    split_options = [f"--{name.replace('_', '-')}" for name in SPLIT_DEFAULTS if getattr(a, name) is not None]
    if split_options and a.clusters is None:        # the options would be ignored: all of --data is evaluated
        verb = "choose" if len(split_options) > 1 else "chooses"
        p.error(f"{' and '.join(split_options)} {verb} the held-out clusters of --data with --clusters; without "
                "--clusters all of --data is evaluated: add --clusters TSV, or leave them out")
    for name, default in SPLIT_DEFAULTS.items():
        if getattr(a, name) is None:
            setattr(a, name, default)
    if a.samples is not None and a.reference is None and a.clusters is None:
        p.error("--samples needs reference sequences: --reference FASTA, or --clusters to use the training part")
    if a.reference is not None and a.clusters is not None:
        p.error("--clusters makes the training part the reference: give one of --reference and --clusters")
    if not 0 < a.val_fraction < 1:
        p.error(f"--val-fraction must be between 0 and 1, got {a.val_fraction}")
    if not 0 < a.infill_fraction <= 1:
        p.error(f"--infill-fraction is the share of residues masked: more than 0 and at most 1, "
                f"got {a.infill_fraction}")
    if not a.target_stderr > 0:
        p.error(f"--target-stderr must be more than 0 (nats/residue), got {a.target_stderr}")
    if a.fold and a.samples is None:
        p.error("--fold folds the samples: give --samples N --reference FASTA")
    if a.hmm is not None and a.samples is None:
        p.error("--hmm scores the samples: give --samples N --reference FASTA (or --clusters)")
    if a.max_t_samples < a.t_samples:
        p.error(f"--max-t-samples ({a.max_t_samples}) is below --t-samples ({a.t_samples}), the pilot's "
                "count and the fewest drawn: raise it, or lower --t-samples")
    if a.device is not None:
        ckpt.check_device(a.device)
    if a.hmm is not None:
        check_hmm_file(a.hmm)
    if a.report is not None:
        ckpt.check_writable(a.report, "--report")
        written = report_files(a.report, with_samples=a.samples is not None)
        names = {"report": "--report", "samples_fasta": "--report's samples FASTA",
                 "identity_histogram": "--report's identity histogram"}
        refuse_overwriting_inputs({names[kind]: path for kind, path in written.items()},
                                  {"--data": a.data, "--reference": a.reference, "--clusters": a.clusters,
                                   "--hmm": a.hmm})
    if a.update_config:
        target = Path(ckpt.named(a.checkpoint))
        if not target.is_dir():
            raise ValueError(f"--update-config rewrites the checkpoint's {ckpt.CONFIG_NAME}: give a local checkpoint "
                             f"directory, not {str(target)!r} (a Hub repo id or a missing path)")
        if not os.access(target, os.W_OK):
            raise ValueError(f"--update-config rewrites {target / ckpt.CONFIG_NAME}, but {target} is not writable")


def _read(path: str, model: ckpt.Checkpoint, what: str, max_len: int | None) -> Dataset:
    data = read_fasta(path, model.alphabet, max_len=max_len)
    if data.num_dropped:
        print(f"note: {what} {path}: {describe_dropped(data)}", file=sys.stderr)
    return data


def _unlike_training(a: argparse.Namespace, model: ckpt.Checkpoint) -> list[str]:
    """How the --clusters split asked for differs from the one the checkpoint's training made, as its
    config.json records it (nothing when it records no training options)."""
    trained = (model.meta.get("training") or {}).get("config") or {}
    differ = []
    if "clusters" in trained and not trained["clusters"]:
        differ.append("training split at random by sequence, without --clusters")
    if trained.get("seed") not in (None, a.split_seed):
        differ.append(f"--split-seed {a.split_seed}, training's --seed {trained['seed']}")
    if trained.get("val_fraction") not in (None, a.val_fraction):
        differ.append(f"--val-fraction {a.val_fraction:g}, training's {trained['val_fraction']:g}")
    return differ


def _load_data(a: argparse.Namespace, model: ckpt.Checkpoint) -> tuple[Dataset, Dataset | None, dict]:
    """(held-out data, reference data or None, what they are): the held-out part of a rebuilt split
    with --clusters, else --data itself; then a seeded subset of --max-seqs."""
    data = _read(a.data, model, "data", model.max_len)
    reference, about = None, {"data": str(a.data)}
    if a.clusters:
        differ = _unlike_training(a, model)
        if differ:
            print(f"warning: this is not the split the checkpoint was trained with ({'; '.join(differ)}): "
                  "held-out sequences may have been trained on", file=sys.stderr)
        clusters = read_clusters(a.clusters)
        reference, data = split(data, a.val_fraction, a.split_seed, clusters)
        about["split"] = {"clusters": str(a.clusters), "val_fraction": a.val_fraction, "seed": a.split_seed,
                          "held_out_sequences": len(data),
                          "held_out_clusters": len({clusters.get(i, i) for i in data.ids}),
                          "reference_sequences": len(reference),
                          "rule": "whole clusters, shuffled with the seed, until the held-out part holds at "
                                  "least val_fraction of the sequences (sedd.data.split)"}
    elif a.reference:
        reference = _read(a.reference, model, "reference", None)
    if a.max_seqs is not None and a.max_seqs < len(data):
        data = data.subset(sorted(random.Random(a.seed).sample(range(len(data)), a.max_seqs)))
    return data, reference, about



def evaluate(a: argparse.Namespace) -> tuple[dict, list[str] | None]:
    """Run every requested metric; returns the result dict and the samples (if drawn)."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    model = ckpt.load(a.checkpoint, device=a.device or "cpu")
    if a.fold:
        check_foldable(model.alphabet)           # now, not after the sampling
    data, reference, about = _load_data(a, model)
    result = {"checkpoint": str(model.source), **about, "seed": a.seed}
    hmm = None                     # read now: a broken file is reported before the slow work, not after it
    if a.samples:
        problem = model.length_histogram_problem()
        if problem:
            raise ValueError(f"--samples: {problem}, so unconditional samples have no lengths to draw; "
                             "evaluate without --samples")
        hmm_path = a.hmm or ckpt.resolve(a.checkpoint) / HMM_NAME
        if a.hmm or hmm_path.is_file():
            hmm = load_hmm(hmm_path)
            # an HMM of another family is refused now, not after the ELBO, the infill and the sampling
            # (one found beside the checkpoint, not asked for, is left out with a warning); the
            # naturals' scores are kept for the family metric
            naturals = [model.alphabet.decode(t) for t in data.tokens]
            try:
                natural = natural_scores(hmm, naturals)
            except ValueError as e:
                if a.hmm:
                    raise ValueError(f"--hmm {a.hmm}: {e}") from None
                print(f"warning: {hmm_path} (found beside the checkpoint): {e}; the family-HMM metrics are left "
                      "out (give --hmm FILE for another profile)", file=sys.stderr)
                hmm = None
    lap("load")
    elbo = elbo_to_precision(model.model, data, model.schedule, model.alphabet.mask_id, t_samples=a.t_samples,
                             target_stderr=a.target_stderr, max_t_samples=a.max_t_samples, seed=a.seed, progress=True,
                             pad_id=model.alphabet.pad_id)
    result.update({k: v for k, v in elbo.items() if not k.startswith("per_sequence")})
    result["length_nats_per_residue"] = (length_nll(model.length_histogram, data, model.max_len)
                                         if model.length_histogram else None)
    result["unigram_nats_per_residue"] = unigram_nll(data, data if reference is None else reference, model.alphabet.size)
    result["unigram_reference"] = ("the held-out data's own composition (plug-in entropy)" if reference is None
                                   else f"the {'training part' if a.clusters else 'reference'} composition")
    lap("elbo")
    # per-sequence ELBO quantiles for the studio's family percentile (sedd.score.family_distribution)
    result[DISTRIBUTION_KEY] = family_distribution(model, data, seed=a.seed, progress=True)
    lap("score_distribution")
    result.update(infill_recovery(model, data, fraction=a.infill_fraction, seed=a.seed, batch_size=a.batch_size,
                                  progress=True))
    lap("infill")
    samples = None
    if a.samples:
        references = [model.alphabet.decode(t) for t in reference.tokens]
        samples = draw_samples(model, a.samples, seed=a.seed, batch_size=max(a.batch_size, 128), progress=True)
        lap("sampling")
        result["samples"] = sample_metrics(samples, references, model.alphabet.residues, seed=a.seed, progress=True,
                                           motif=a.motif)
        if hmm is not None:
            result["samples"]["family_hmm"] = family_metrics(hmm, samples, naturals, seed=a.seed, natural=natural)
        lap("sample_metrics")
        if a.fold:
            result["fold"] = fold_metrics(samples, progress=True, device=a.device)
            lap("fold")
    result["seconds"] = {**timings, "total": round(sum(timings.values()), 2)}
    return result, samples


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    try:
        _check_args(p, a)
        with one_line_warnings():            # e.g. the split's note on copies left out of training
            result, samples = evaluate(a)
    except (ValueError, OSError) as e:   # bad paths, bad checkpoints, empty FASTA: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.report:
        # named before they are written: the result, which lists them, is printed first
        result["files"] = report_files(a.report, with_samples=bool(result.get("samples")) and samples is not None)
    print(json.dumps(json_safe(result), allow_nan=False) if a.json else summary(result), flush=True)
    try:
        if a.report:
            identities = result.get("samples", {}).get("nearest_identities")
            write_report(a.report, result, samples, identities)
        if a.update_config:
            written = ckpt.update_config(result["checkpoint"], "evaluation", json_safe(result))
            print(f"wrote the evaluation block of {written}", file=sys.stderr)
            if a.max_seqs is not None:      # the block was of the whole held-out set: say what replaced it
                print(f"note: it holds the evaluation of {result['num_sequences']} sequences (--max-seqs), and "
                      f"sedd.score's family percentile now ranks against their {DISTRIBUTION_KEY}",
                      file=sys.stderr)
    except (ValueError, OSError) as e:
        print(f"error: {e} (the result is on stdout)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
