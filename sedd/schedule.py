"""Log-linear noise schedule of SEDD (Lou et al. 2023, §3.4; arXiv 2310.16834).

    σ̄(t) = −log(1 − (1−ε)·t)          total noise
    σ(t)  = dσ̄/dt = (1−ε) / (1 − (1−ε)·t)   noise rate

Under the absorbing process a position is masked at time t with probability
1 − e^{−σ̄(t)} = (1−ε)·t, so t ∈ [0, 1] reads directly as the expected masked fraction.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class LogLinearSchedule:
    eps: float = 1e-3

    def __post_init__(self) -> None:
        # ε ∈ [0, 1): at ε = 1 nothing is ever masked (1 − e^{−σ̄} = 0), so the sampler's stay
        # probability is 0/0 = NaN and no MASK is ever revealed; ε < 0 or > 1 is not a probability
        if not 0 <= self.eps < 1:
            raise ValueError(f"the schedule's eps must be a number from 0 up to (not including) 1, got {self.eps!r}")

    def total_noise(self, t: torch.Tensor) -> torch.Tensor:
        """σ̄(t) = −log(1 − (1−ε)t)."""
        return -torch.log1p(-(1 - self.eps) * t)

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        """σ(t) = (1−ε) / (1 − (1−ε)t)."""
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def mask_prob(self, t: torch.Tensor) -> torch.Tensor:
        """P(x_t = MASK | x_0) = 1 − e^{−σ̄(t)} = (1−ε)t."""
        return -torch.expm1(-self.total_noise(t))

    def to_dict(self) -> dict:
        return {"kind": "loglinear", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "LogLinearSchedule":
        if d.get("kind", "loglinear") != "loglinear":
            raise ValueError(f"unknown noise schedule {d.get('kind')!r}; this version knows 'loglinear'")
        unknown = sorted(set(d) - {"kind", "eps"})
        if unknown:      # a newer sedd's setting: the schedule built without it would be another schedule
            raise ValueError(f"the 'schedule' section has settings this version of sedd does not know "
                             f"({', '.join(map(repr, unknown))}); a newer sedd wrote it: update sedd to load it")
        return cls(eps=float(d["eps"]))
