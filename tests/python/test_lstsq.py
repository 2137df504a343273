"""simplescope.lstsq against numpy.linalg.lstsq on all rows at once."""
import numpy as np
import pytest

from simplescope.lstsq import StreamingLstsq


def test_streaming_fit_equals_numpy_lstsq():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 12)) * rng.uniform(0.1, 3, size=12) + rng.normal(size=12)
    Y = X @ rng.normal(size=(12, 7)) + rng.normal(size=7) + 0.3 * rng.normal(size=(500, 7))
    fit = StreamingLstsq(12, 7)
    for lo in range(0, 500, 64):
        fit.add(X[lo:lo + 64], Y[lo:lo + 64])
    m = fit.solve()
    A = np.hstack([X, np.ones((500, 1))])
    coef, *_ = np.linalg.lstsq(A, Y, rcond=None)
    np.testing.assert_allclose(m.W, coef[:12], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.b, coef[12], rtol=1e-5, atol=1e-5)
    resid = Y - A @ coef
    np.testing.assert_allclose(m.mse, (resid ** 2).mean(), rtol=1e-6)
    np.testing.assert_allclose(m.r2, 1 - (resid ** 2).sum() / ((Y - Y.mean(0)) ** 2).sum(), rtol=1e-6)


def test_exact_relation_is_recovered():
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(5, 9)), rng.normal(size=9)
    X = rng.normal(size=(40, 5))
    fit = StreamingLstsq(5, 9)
    fit.add(X, X @ W + b)
    m = fit.solve()
    np.testing.assert_allclose(m.W, W, atol=1e-5)
    np.testing.assert_allclose(m.b, b, atol=1e-5)
    assert m.mse < 1e-10 and m.r2 > 1 - 1e-10


def test_too_few_rows_and_bad_shapes():
    fit = StreamingLstsq(8, 3)
    fit.add(np.ones((8, 8)), np.ones((8, 3)))
    with pytest.raises(ValueError, match="need more than 8 rows"):
        fit.solve()
    with pytest.raises(ValueError, match="want"):
        fit.add(np.ones((2, 7)), np.ones((2, 3)))
