"""Comparison helpers for the API tests (print the numbers when a comparison fails)."""
import numpy as np


def assert_close(name, got, want, tol):
    """Max-abs-diff comparison; the failure message gives the max diff and the first mismatch."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape}, want {want.shape}"
    diff = np.abs(got - want)
    worst = float(diff.max()) if diff.size else 0.0
    if not worst <= tol:
        bad = np.argwhere(diff > tol)
        i = tuple(bad[0])
        raise AssertionError(f"{name}: max abs diff {worst:.3g} > {tol:g}; {len(bad)} of {diff.size} differ; "
                             f"first at {i}: got {got[i]!r}, want {want[i]!r}")
    return worst
