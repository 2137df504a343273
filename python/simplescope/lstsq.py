"""Least squares that streams: fit Y ≈ X @ W + b from (X, Y) batches without holding them.

The affine-mapping baseline (hidden state of layer ℓ → the last layer's) and cross-model
patching (one model's layer ℓ → another model's layer ℓ*) both fit such maps on thousands of
documents. Only the sums XᵀX, XᵀY, ΣX, ΣY are kept (in float64), so memory does not grow with
the number of rows; `solve` centres them and solves the normal equations, which gives the same
W, b as ordinary least squares on all rows at once (numpy.linalg.lstsq with a bias column).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AffineMap:
    """y = x @ W + b, with W [d_in, d_out] and b [d_out] (float32), and the fit's residual: the
    mean squared error per output dimension over the training rows, and R² (the fraction of the
    targets' variance explained)."""
    W: np.ndarray
    b: np.ndarray
    mse: float = float("nan")
    r2: float = float("nan")

    def __call__(self, x):
        return x @ self.W + self.b


class StreamingLstsq:
    """Accumulates (X [n, d_in], Y [n, d_out]) batches; `solve()` returns the AffineMap."""

    def __init__(self, d_in: int, d_out: int):
        self.d_in, self.d_out = int(d_in), int(d_out)
        self.n = 0
        self.xx = np.zeros((d_in, d_in))
        self.xy = np.zeros((d_in, d_out))
        self.sx = np.zeros(d_in)
        self.sy = np.zeros(d_out)
        self.yy = 0.0  # Σ‖y‖²

    def add(self, X, Y):
        X = _as_f64(X, "X")
        Y = _as_f64(Y, "Y")
        if X.ndim != 2 or X.shape[1] != self.d_in:
            raise ValueError(f"X has shape {X.shape}, want [n, {self.d_in}]")
        if Y.ndim != 2 or Y.shape[1] != self.d_out or Y.shape[0] != X.shape[0]:
            raise ValueError(f"Y has shape {Y.shape}, want [{X.shape[0]}, {self.d_out}]")
        self.n += X.shape[0]
        self.xx += X.T @ X
        self.xy += X.T @ Y
        self.sx += X.sum(0)
        self.sy += Y.sum(0)
        self.yy += float((Y * Y).sum())

    def solve(self) -> AffineMap:
        if self.n <= self.d_in:
            raise ValueError(f"{self.n} rows cannot determine an affine map from {self.d_in} dimensions "
                             f"(need more than {self.d_in} rows)")
        mx, my = self.sx / self.n, self.sy / self.n
        cxx = self.xx - self.n * np.outer(mx, mx)  # centred XᵀX
        cxy = self.xy - self.n * np.outer(mx, my)
        W, *_ = np.linalg.lstsq(cxx, cxy, rcond=None)
        b = my - mx @ W
        # residual Σ‖y - xW - b‖² from the sums: Σ‖y-ȳ‖² - tr(Wᵀ cxy)
        total = self.yy - self.n * float(my @ my)
        resid = max(0.0, total - float(np.sum(W * cxy)))
        return AffineMap(W=W.astype(np.float32), b=b.astype(np.float32),
                         mse=resid / (self.n * self.d_out), r2=1.0 - resid / total if total > 0 else float("nan"))


def _as_f64(a, name):
    try:
        import torch
        if isinstance(a, torch.Tensor):
            a = a.detach().to("cpu", torch.float64).numpy()
    except ImportError:
        pass
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return a
