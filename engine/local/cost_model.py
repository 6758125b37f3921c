"""`CostModel`: what preempting a session costs, fitted on this machine by `streamrag profile`.

A victim's KV can be dropped and recomputed later, or offloaded to host memory and restored.
Both costs grow with the tokens held; each is fitted as a quadratic in the token count
(attention makes long prompts super-linear). The cheaper mode is chosen per victim.

On the CPU build the KV cache already lives in host memory and vLLM's offloading connector
is a GPU-to-host path, so there is no swap to measure: `swap` is None and every preemption
recomputes. A GPU deployment fills `swap` from its own profile and gets swap where cheaper.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

PreemptMode = Literal["recompute", "swap"]


@dataclass(frozen=True)
class Fit:
    """seconds(n) = a*n^2 + b*n + c, valid for n in [n_min, n_max]."""

    a: float
    b: float
    c: float
    n_min: int
    n_max: int

    def seconds(self, n: int) -> float:
        return max(0.0, self.a * n * n + self.b * n + self.c)

    @classmethod
    def of(cls, tokens: list[int], seconds: list[float]) -> Fit:
        import numpy as np

        a, b, c = np.polyfit(np.asarray(tokens, float), np.asarray(seconds, float), 2)
        return cls(float(a), float(b), float(c), min(tokens), max(tokens))


@dataclass(frozen=True)
class CostModel:
    recompute: Fit
    swap: Fit | None  # offload + restore; None where the build has no offload path
    machine: str = ""
    model: str = ""

    def mode(self, tokens: int) -> PreemptMode:
        """The cheaper way to give back `tokens` worth of KV and get it back later."""
        if self.swap is not None and self.swap.seconds(tokens) < self.recompute.seconds(tokens):
            return "swap"
        return "recompute"

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> CostModel:
        data = json.loads(Path(path).read_text())
        swap = Fit(**data["swap"]) if data.get("swap") else None
        return cls(Fit(**data["recompute"]), swap, data.get("machine", ""), data.get("model", ""))

    @classmethod
    def recompute_only(cls) -> CostModel:
        """The model used before any profile exists: recompute, at a nominal linear cost."""
        return cls(Fit(0.0, 1e-3, 0.0, 1, 1 << 20), None)


def default_profile_path(model: str, cache_dir: str | Path | None = None) -> Path:
    """Where `streamrag profile` saves, and the engine looks for, a model's cost profile."""
    from engine.models import default_cache_dir

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / "profiles" / f"{Path(model).name or model}.json"
