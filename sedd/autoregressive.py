"""The autoregressive baseline: the same transformer with a causal mask, trained on shifted targets.

A left-to-right model factorises the likelihood exactly,
    −log p(x_1…x_n, END) = Σ_{i=1..n} −log p(x_i | x_<i) − log p(END | x_1…x_n),
so its negative log-likelihood on held-out sequences is exact, not a bound. The network is
``ScoreNetwork`` with ``causal=True`` and one more output class, END (``vocab_size = V + 1``):

    input   BOS  x_1  x_2  …  x_n          (n + 1 positions; BOS is the network's MASK slot)
    target  x_1  x_2  x_3  …  END

Token ids for a network of ``vocab_size = V + 1``: residues 0…V−1 (those of the alphabet),
END = V (an output only), BOS = V + 1, padding = V + 2. The END term is what makes the NLL a
distribution over whole sequences of any length; SEDD instead conditions on the length, so the
fair comparisons are (residue terms only) vs SEDD's ELBO, and (residues + END) vs SEDD's ELBO plus
−log p(length) (``benchmarks/ar_baseline.py`` reports both). ``AutoregressiveTrainer`` trains it
with everything else of ``sedd.train`` unchanged; ``sample`` draws from it left to right, so its
samples can be measured beside SEDD's (``benchmarks/motif_rate.py``).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .data import Dataset, bucketed_batches, collate
from .likelihood import check_sequences
from .model import ModelConfig, ScoreNetwork, device_of, eval_mode
from .train import Trainer


def autoregressive_config(model_cfg: ModelConfig) -> ModelConfig:
    """The causal twin of a SEDD network config: one more output (END) and one more position (BOS)."""
    return ModelConfig(**{**model_cfg.to_dict(), "vocab_size": model_cfg.vocab_size + 1,
                          "max_len": model_cfg.max_len + 1, "causal": True})


def shift(x0: torch.LongTensor, lengths: torch.LongTensor, num_residues: int) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Inputs and targets of teacher forcing, both [B, L + 1].

    x0: [B, L] residue ids (anything beyond ``lengths`` is ignored); ``num_residues`` = V.
    inputs = BOS x_1 … x_n PAD…, targets = x_1 … x_n END PAD… (padding = V + 2 in both).
    """
    B, L = x0.shape
    end, bos, pad = num_residues, num_residues + 1, num_residues + 2
    pos = torch.arange(L + 1, device=x0.device).unsqueeze(0)                   # [1, L+1]
    n = lengths.unsqueeze(1)                                                   # [B, 1]
    body = torch.cat([x0, torch.full((B, 1), pad, dtype=x0.dtype, device=x0.device)], dim=1)
    inputs = torch.cat([torch.full((B, 1), bos, dtype=x0.dtype, device=x0.device), x0], dim=1)
    inputs = torch.where(pos <= n, inputs, torch.full_like(inputs, pad))
    targets = torch.where(pos < n, body, torch.where(pos == n, torch.full_like(body, end), torch.full_like(body, pad)))
    return inputs, targets


def causal_nll(model: ScoreNetwork, x0: torch.LongTensor, lengths: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: (Σ_i −log p(x_i | x_<i), −log p(END | x)), each [B] float32 nats.

    ``model`` must be causal with ``vocab_size = V + 1`` (``autoregressive_config``).
    """
    cfg = model.config
    if not cfg.causal:
        raise ValueError("the autoregressive likelihood needs a causal network (ModelConfig(causal=True))")
    V = cfg.vocab_size - 1
    inputs, targets = shift(x0, lengths, V)
    logits = model(inputs)                                                     # (B, L+1, V+1)
    nll = F.cross_entropy(logits.float().transpose(1, 2), targets.clamp(max=V), reduction="none")   # (B, L+1)
    residue = (nll * (targets < V)).sum(-1)
    end = (nll * (targets == V)).sum(-1)
    return residue, end


@torch.no_grad()
def exact_nll(model: ScoreNetwork, data: Dataset, tokens_per_batch: int = 16384, device=None) -> dict:
    """Exact NLL of ``data`` per residue, with and without the END term.

    nll_nats_per_residue = Σ_seq Σ_i −log p(x_i | x_<i) / Σ_seq n; nll_with_end adds −log p(END | x)
    to each sequence. Exact for this set of sequences: no Monte Carlo error, unlike SEDD's ELBO.
    ``per_sequence``: each sequence's residue nats (for paired comparisons).
    """
    if not len(data):
        raise ValueError("no sequences to score: the NLL of an empty set is undefined")
    V = model.config.vocab_size - 1
    # END, BOS and PAD have ids after the residues: as input they would be read as those, not scored
    check_sequences(data, V, model.config.max_len - 1)           # one position goes to BOS
    device = device or device_of(model)
    residue = torch.zeros(len(data), dtype=torch.float64)
    end = torch.zeros(len(data), dtype=torch.float64)
    with eval_mode(model):
        for batch in bucketed_batches([len(t) for t in data.tokens], tokens_per_batch, seed=0):
            x0, lengths = collate([data.tokens[i] for i in batch], pad_id=V + 2)
            r, e = causal_nll(model, x0.to(device), lengths.to(device))
            residue[batch], end[batch] = r.double().cpu(), e.double().cpu()
    n_res = data.num_residues()
    return {"nll_nats_per_residue": residue.sum().item() / n_res,
            "nll_with_end_nats_per_residue": (residue + end).sum().item() / n_res,
            "num_sequences": len(data), "num_residues": n_res, "per_sequence": residue.tolist()}


@torch.no_grad()
def sample(model: ScoreNetwork, num_samples: int, *, generator: torch.Generator | None = None,
           temperature: float = 1.0) -> list[list[int]]:
    """Ancestral samples, left to right: x_i ~ p(· | x_<i) until END. Residue ids per sample.

    The model's exact distribution at ``temperature`` 1 (the counterpart of SEDD's τ-leaping: no
    top-p, no reordering), given at least one residue: END is not drawn first, since an empty
    sequence is no protein and no tool downstream takes one (SEDD's lengths start at 1 too). A
    sample that has not ended after ``max_len − 1`` residues, the most the network has positions
    for, stops there. One forward of the whole prefix per residue: with
    prefixes of at most 128 tokens a key-value cache would save little.
    """
    cfg = model.config
    if not cfg.causal:
        raise ValueError("ancestral sampling needs a causal network (ModelConfig(causal=True))")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    device = device_of(model)
    end, bos = cfg.vocab_size - 1, cfg.vocab_size
    most = cfg.max_len - 1
    x = torch.full((num_samples, 1), bos, dtype=torch.long, device=device)
    lengths = torch.full((num_samples,), most, dtype=torch.long, device=device)
    ended = torch.zeros(num_samples, dtype=torch.bool, device=device)
    for i in range(most + 1):
        logits = model(x)[:, -1] / temperature                                    # (B, V + 1)
        if i == 0:
            logits[:, end] = -torch.inf                                           # at least one residue
        probs = logits.softmax(-1)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        now = ~ended & (token == end)
        lengths[now], ended = i, ended | now
        if ended.all() or i == most:
            break
        x = torch.cat([x, token.unsqueeze(1)], dim=1)                             # ended rows: ignored
    return [row[1:1 + n].tolist() for row, n in zip(x, lengths.tolist())]


def draw_samples(model: ckpt.Checkpoint, num_samples: int, *, seed: int = 0, batch_size: int = 128,
                 progress: bool = False) -> list[str]:
    """Unconditional samples of an autoregressive checkpoint; the model chooses each length (END)."""
    from tqdm.auto import tqdm

    device = device_of(model.model)
    sequences: list[str] = []
    for b in tqdm(range(0, num_samples, batch_size), disable=not progress, leave=False, desc="sampling batches"):
        generator = torch.Generator(device).manual_seed(seed + b // batch_size)
        rows = sample(model.model, min(batch_size, num_samples - b), generator=generator)
        sequences += [model.alphabet.decode(row) for row in rows]
    return sequences


class AutoregressiveTrainer(Trainer):
    """``Trainer`` with the causal twin of its network and the left-to-right NLL (with END) as the loss.

    Everything else — data, split, batches, optimizer, LR schedule, EMA, budgets, checkpoints — is
    the diffusion model's. Validation records the exact residue NLL under the ELBO's history keys,
    so early stopping works unchanged. One difference: 'best weights' are the raw or the EMA weights,
    whichever has the lower NLL on the probe, where the diffusion trainer ships EMA weights only.
    The baseline is a likelihood measurement first, so it keeps the lowest NLL it reached (every
    figure quoted for it was measured this way). One process only.
    """

    def _build_networks(self) -> None:
        cfg = self.cfg
        if self.distributed:
            raise ValueError("the autoregressive baseline trains in one process; run it without torchrun")
        self.model = ScoreNetwork(autoregressive_config(self._model_config())).to(self.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.ddp = self.model
        self.net = torch.compile(self.model, dynamic=True) if cfg.compile else self.model

    def _loss(self, x0: torch.LongTensor, lengths: torch.LongTensor) -> tuple[torch.Tensor, torch.LongTensor]:
        """(Σ over the batch of the exact NLL in nats, residues and ends included; the residues):
        ``Trainer._loss``'s contract, whose ratio is the loss in nats/residue."""
        residue, end = causal_nll(self.net, x0, lengths)
        return (residue + end).sum(), lengths.sum()

    def evaluate(self) -> dict:
        record = {"step": self.step}
        for name, net in (("raw", self.model), ("ema", self.ema)):
            record[f"val_elbo_{name}"] = exact_nll(net, self.val_probe, device=self.device)["nll_nats_per_residue"]
            if record[f"val_elbo_{name}"] < self.best["elbo"]:
                self.best = {"elbo": record[f"val_elbo_{name}"], "step": self.step,
                             "weights": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}
        self.history.append(record)
        return record
