"""The ELBO estimator: the bound on −log p(residues | length), for whole or partly observed sequences.

For a sequence x_0 of length n the bound (``loss.py``, docs/design.md §2) is
    −log p(x_0 | n) ≤ E_{t~U[ε,1]} [ (1/t) Σ_{i masked in x_t} −log p_θ(x_0^i | x_t) ] =: E_t[f(t)],
up to the ends of the schedule that t ∈ [ε, 1] leaves out: O(ε) nats, in either direction (``loss.py``).
Each sequence gets K stratified times t_k = ε + (1−ε)(k + u_k)/K, k = 0…K−1, and one x_t per time.
The reported value is Σ_seq Σ_k f / (K Σ_seq n) in nats/residue. Its standard error is the Monte
Carlo error of that number for this fixed set of sequences: sqrt(Σ_seq Var_k(f)/K) / Σ_seq n, with
Var_k the sample variance over the K times (conservative under stratification).
``elbo_to_precision`` draws as many times as a pilot estimate says that error needs to fall below
a target (0.01 by default), in rounds of fresh stratified times: a count chosen from the times it
reports would bias the ELBO low (its docstring). Round r is seeded seed + 7919·r: the rounds of one
call are independent, but seeds 7919 apart share rounds (average over seeds that are not; the
stored figures were estimated this way). Rounds r with K_r times combine as
    ELBO = Σ_r K_r ELBO_r / K,   SE = sqrt(Σ_r K_r² SE_r²) / K,   K = Σ_r K_r,
which is the single-round formula with the variance pooled over all K times. For an untrained
model Var(f) ≈ n log²20 (ln(1/ε) − 1), so reaching 0.01 takes K·Σn ≈ 5·10⁵ (sequence, t) tokens.

Partial observations (docs/design.md §11). An absorbing-diffusion model is an any-order
autoregressive model, so the likelihood of only the ``observed`` positions, the others masked at
every t, has the same bound restricted to the observed positions; ``observed`` (one bool list per
sequence) selects them and the per-residue figure divides by the observed count.
−log p(length) is reported separately (``length_nll``): the model is conditional on the length.
Used by training (validation), ``sedd.evaluate``, ``sedd.score`` and span-length choice.
"""
from __future__ import annotations

import math
import operator

import torch

from .data import Dataset, bucketed_batches, collate
from .loss import diffusion_loss
from .model import device_of, eval_mode
from .schedule import LogLinearSchedule
from .spans import log_length_prior

T_SAMPLES_PER_ROUND = 64     # bounds one forward at ≤ 64 copies of a sequence
# elbo_to_precision draws this many times the count its pilot predicts: a pilot's error, from few
# times of a heavy-tailed f(t), is more often low than high. With it sedd.score's pilot of 16 drew,
# for the bundled model, fewer times than the earlier rounds did on average, the median error a
# little above the target (a check on 24 designs, not stored); a larger margin buys a smaller error
# with more times. The error reported is always that of the times drawn.
PILOT_MARGIN = 1.25
PILOT_SEED_OFFSET = 2**31 - 1  # elbo_to_precision's pilot: a prime, no multiple of the rounds' 7919


def check_sequences(data: Dataset, num_residues: int, max_len: int | None,
                    observed: list[list[bool]] | None = None, unobserved_id: int | None = None) -> None:
    """Refuse, by name, what a likelihood cannot score: an empty sequence, one longer than the network's
    ``max_len``, or a token that is not a residue id 0 … ``num_residues`` − 1 (a MASK or PAD id would
    otherwise be scored as a residue; ``Alphabet.encode`` gives residue ids). Positions outside
    ``observed`` may also hold ``unobserved_id`` (MASK): they are masked anyway.
    """
    for i, tokens in enumerate(data.tokens):
        name = f"sequence {data.ids[i]!r} (number {i + 1})" if i < len(data.ids) else f"sequence number {i + 1}"
        if len(tokens) == 0:
            raise ValueError(f"{name} is empty: a likelihood needs 1 to {max_len or 'the maximum'} residues")
        if max_len is not None and len(tokens) > max_len:
            raise ValueError(f"{name} has {len(tokens)} residues; the model's maximum is {max_len}")
        for j, tok in enumerate(tokens):
            try:                                     # ints, numpy and 0-d torch integers; not str, float, bool
                value = None if isinstance(tok, bool) else operator.index(tok)
            except TypeError:
                value = None
            hidden = observed is not None and not observed[i][j]
            if value is not None and (0 <= value < num_residues or (hidden and value == unobserved_id)):
                continue
            raise ValueError(f"{name} holds {tok!r} at position {j + 1}, which is not a residue id: allowed "
                             f"0 … {num_residues - 1} (the alphabet's residues, as Alphabet.encode gives them)"
                             + (f", and the MASK id {unobserved_id} at unobserved positions" if observed is not None
                                and unobserved_id is not None else ""))


@torch.no_grad()
def estimate_elbo(model, data: Dataset, schedule: LogLinearSchedule, mask_id: int, t_samples: int = 4,
                  seed: int = 0, tokens_per_batch: int = 16384, device=None, progress: bool = False,
                  observed: list[list[bool]] | None = None, pad_id: int | None = None) -> dict:
    """Per-residue ELBO (nats) of ``data`` under ``model`` with its Monte Carlo standard error.

    ``pad_id``: the id the network ignores (``Alphabet.pad_id``; default: the network's own
    ``pad_id``). Times and masks come from generators seeded with ``seed`` (the masks' on the
    model's device), so the estimate is the same on every call, rank and resume.

    ``observed``: one bool list per sequence, as long as it; when given, only those positions are scored and the
    others stay masked (partial observations). ``per_sequence`` holds each sequence's bound in
    nats (summed over its scored positions, averaged over the K times), ``per_sequence_stderr``
    its Monte Carlo error.
    """
    from tqdm.auto import tqdm

    if not len(data):
        raise ValueError("no sequences to score: the ELBO of an empty set is undefined")
    if observed is not None and (len(observed) != len(data)
                                 or any(len(o) != len(t) for o, t in zip(observed, data.tokens))):
        raise ValueError("observed needs one bool list per sequence, as long as the sequence")
    if t_samples < 1:
        raise ValueError(f"t_samples must be at least 1, got {t_samples}")
    check_sequences(data, mask_id, getattr(getattr(model, "config", None), "max_len", None), observed, mask_id)
    device = torch.device(device) if device is not None else device_of(model)
    pad_id = model.pad_id if pad_id is None else pad_id
    gen = torch.Generator(device="cpu").manual_seed(seed)                 # times (and masks on a CPU)
    # masks are drawn where the model runs, from their own seeded generator (never the global RNG)
    mask_gen = gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed)
    K = t_samples
    per_seq = torch.zeros(len(data), K, dtype=torch.float64)
    batches = bucketed_batches([len(t) for t in data.tokens], max(1, tokens_per_batch // K), seed)
    with eval_mode(model):
        for batch in tqdm(batches, desc="ELBO", disable=not progress, leave=False):
            x0, lengths = collate([data.tokens[i] for i in batch], pad_id=pad_id)
            B = len(batch)
            strata = (torch.arange(K).repeat(B) + torch.rand(B * K, generator=gen)) / K          # [B·K]
            t = schedule.eps + (1 - schedule.eps) * strata
            obs = None
            if observed is not None:
                obs = torch.zeros_like(x0, dtype=torch.bool)
                for row, i in enumerate(batch):
                    obs[row, :len(observed[i])] = torch.as_tensor(observed[i], dtype=torch.bool)
                obs = obs.repeat_interleave(K, 0).to(device)
            # one forward per (sequence, time): repeat each sequence K times
            nats = diffusion_loss(model, x0.repeat_interleave(K, 0).to(device), lengths.repeat_interleave(K).to(device),
                                  schedule, mask_id, t=t.to(device), generator=mask_gen,
                                  observed=obs, pad_id=pad_id)
            per_seq[batch] = nats.double().cpu().view(B, K)
    n_res = data.num_residues() if observed is None else sum(sum(o) for o in observed)
    elbo = per_seq.sum().item() / (K * max(n_res, 1))
    var = per_seq.var(dim=1, unbiased=True).sum().item() / K if K > 1 else float("nan")
    seq_var = per_seq.var(dim=1, unbiased=True) / K if K > 1 else torch.full((len(data),), float("nan"))
    return {"elbo_nats_per_residue": elbo, "elbo_stderr": math.sqrt(var) / max(n_res, 1),
            "num_sequences": len(data), "num_residues": n_res, "t_samples": K,
            "per_sequence": per_seq.mean(1).tolist(), "per_sequence_stderr": seq_var.sqrt().tolist()}


def length_nll(length_histogram: dict[int, int], data: Dataset, max_len: int) -> float:
    """−log p(length) per residue: Σ_seq −log p(n_seq) / Σ_seq n_seq, with the add-one smoothed
    training histogram over every length the model can take,
        p(n) = (count(n) + 1) / (Σ_m count(m) + max_len),   n = 1 … max_len   (``spans.log_length_prior``).
    """
    if not len(data):
        raise ValueError("no sequences: −log p(length) per residue of an empty set is undefined")
    if any(len(t) == 0 for t in data.tokens):
        raise ValueError(f"{sum(len(t) == 0 for t in data.tokens)} sequences are empty; "
                         f"the model's lengths are 1 … {max_len}")
    if max(length_histogram, default=0) > max_len:
        raise ValueError(f"the length histogram holds lengths above the model's maximum {max_len}")
    too_long = [len(t) for t in data.tokens if len(t) > max_len]
    if too_long:
        raise ValueError(f"{len(too_long)} sequences are longer than the model's maximum {max_len}")
    return -sum(log_length_prior(length_histogram, [len(t) for t in data.tokens], max_len)) / data.num_residues()


def unigram_nll(data: Dataset, reference: Dataset, size: int) -> float:
    """Cross-entropy per residue of ``data`` under the residue composition of ``reference``:
        −(1/N) Σ_{residues a in data} log q(a),   q(a) = (c_ref(a) + 1) / (Σ_b c_ref(b) + V)
    (add-one smoothed over the V = ``size`` residues). The likelihood a model reaches when it ignores
    position and context: the floor a diffusion model's ELBO has to beat. ``reference = data`` gives
    the plug-in entropy of ``data``'s own composition.
    """
    def counts(d: Dataset) -> torch.Tensor:
        flat = torch.tensor([a for t in d.tokens for a in t], dtype=torch.long)
        return torch.bincount(flat, minlength=size).double()

    q = (counts(reference) + 1) / (counts(reference).sum() + size)
    c = counts(data)
    return float(-(c * q.log()).sum() / c.sum())


# ---- likelihood to a target precision --------------------------------------------------------------
def elbo_to_precision(model, data: Dataset, schedule: LogLinearSchedule, mask_id: int, *, t_samples: int = 4,
                      target_stderr: float = 0.01, max_t_samples: int = 1024, seed: int = 0, device=None,
                      progress: bool = False, observed: list[list[bool]] | None = None,
                      pad_id: int | None = None, pilot_t_samples: int | None = None) -> dict:
    """``estimate_elbo`` with as many times as its standard error needs to fall below ``target_stderr``.

    Two stages, so that the count never depends on the times reported. A pilot of ``pilot_t_samples``
    times per sequence (default ``t_samples``), from a seed stream of its own, estimates the error;
    the count it predicts, K = pilot·(SE_pilot/target)²·``PILOT_MARGIN``, at least ``t_samples`` and
    at most ``max_t_samples``, is then drawn afresh, and only those K times are reported. (Adding
    rounds until the error so far is below the target biases the ELBO low: f(t) has a heavy tail at
    small t, so a round that drew high also has a high error and is diluted by more rounds, while one
    that drew low stops the loop and is kept.) The margin leaves room for the pilot's own error;
    ``elbo_target_met`` says whether the reported error did fall below the target. The K times are
    drawn in rounds of at most ``T_SAMPLES_PER_ROUND``, round r seeded seed + 7919·r, and pooled as in
    the module docstring; when K comes out as ``t_samples`` ≤ 64 they are exactly ``estimate_elbo``'s
    with ``seed``.
    Returns ``estimate_elbo``'s keys (``per_sequence`` and its error pooled the same way),
    ``t_samples`` = K, ``pilot_t_samples``, ``elbo_target_stderr`` and ``elbo_target_met``.
    """
    pilot_t_samples = t_samples if pilot_t_samples is None else pilot_t_samples
    if min(t_samples, max_t_samples, pilot_t_samples) < 2:
        raise ValueError("t_samples, max_t_samples and pilot_t_samples must be at least 2 to estimate a standard "
                         f"error, got {t_samples}, {max_t_samples} and {pilot_t_samples}")
    if not target_stderr > 0:
        raise ValueError(f"target_stderr must be more than 0 (nats/residue), got {target_stderr}")

    def draw(count: int, first_seed: int) -> dict:
        """``count`` times per sequence in rounds of at most ``T_SAMPLES_PER_ROUND``, pooled."""
        rounds = [min(T_SAMPLES_PER_ROUND, count - done) for done in range(0, count, T_SAMPLES_PER_ROUND)]
        if len(rounds) > 1 and rounds[-1] < 2:          # a round needs 2 times for its SE: 65 = 63 + 2
            rounds[-2:] = [rounds[-2] - 1, 2]
        results = [estimate_elbo(model, data, schedule, mask_id, t_samples=k, seed=first_seed + 7919 * r,
                                 device=device, progress=progress, observed=observed, pad_id=pad_id)
                   for r, k in enumerate(rounds)]
        per_sequence = sum(k * torch.tensor(r["per_sequence"], dtype=torch.float64) for k, r in zip(rounds, results))
        per_sequence_var = sum((k * torch.tensor(r["per_sequence_stderr"], dtype=torch.float64)) ** 2
                               for k, r in zip(rounds, results))
        return {**results[0], "t_samples": count,
                "elbo_nats_per_residue": sum(k * r["elbo_nats_per_residue"] for k, r in zip(rounds, results)) / count,
                "elbo_stderr": math.sqrt(sum((k * r["elbo_stderr"]) ** 2 for k, r in zip(rounds, results))) / count,
                "per_sequence": (per_sequence / count).tolist(),
                "per_sequence_stderr": (per_sequence_var.sqrt() / count).tolist()}

    pilot_count = min(pilot_t_samples, max_t_samples)       # the cap holds for the pilot too
    pilot = draw(pilot_count, seed + PILOT_SEED_OFFSET)
    needed = math.ceil(pilot_count * (pilot["elbo_stderr"] / target_stderr) ** 2 * PILOT_MARGIN)
    result = draw(min(max(needed, t_samples), max_t_samples), seed)
    return {**result, "pilot_t_samples": pilot_count, "elbo_target_stderr": target_stderr,
            "elbo_target_met": result["elbo_stderr"] < target_stderr}


