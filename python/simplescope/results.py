"""Results of a Patchscope evaluation: per-example arrays, per-layer means, tables.

A :class:`Results` is built by the engine from plain data::

    Results(methods, layers, data, meta, target_layers=None)

``data[method][field]`` is an array of shape ``(n_prompts, n_layers)`` for an ordinary method, or
``(n_prompts, n_layers, n_target_layers)`` for a grid method (source layer x target layer, whose
target layer ids are ``target_layers[method]``).  The fields are

- ``prec1``           float, 1.0 where the patched argmax equals the source argmax, NaN where not computed
- ``surprisal``       float, -ln p_patched(source top-1)      (simplescope's definition)
- ``paper_surprisal`` float, -ln p_source(patched top-1)      (the Patchscopes paper's code)
- ``position``, ``source_top1``, ``patched_top1``  int64

Extra fields are kept and saved as they are.  Files are read and written by
:mod:`simplescope.results_io` (``Results.save`` / ``Results.load`` delegate to it), figures are
drawn by :mod:`simplescope.plots` (``Results.plot``).  Only numpy is imported at module level;
pandas, matplotlib and msgpack are imported by the functions that need them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from . import plots, results_io
from ._fields import FIELDS, INT_FIELDS, METRICS, UnknownNameError, check_metric, unknown_name

__all__ = ["Results", "MetricView", "UnknownNameError", "METRICS", "INT_FIELDS", "FIELDS", "check_metric", "nanmean0"]


def nanmean0(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 ignoring NaN (float64; NaN where no value), and the count of values."""
    a = np.asarray(a, dtype=np.float64)
    ok = ~np.isnan(a)
    n = ok.sum(axis=0)
    s = np.where(ok, a, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return mean, n.astype(np.int64)


class MetricView(Mapping):
    """``res.prec1["simplescope"]`` -> per-layer mean over prompts (read-only float64 array)."""

    def __init__(self, results: "Results", metric: str):
        self._res = results
        self._metric = metric
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, method: str) -> np.ndarray:
        if method not in self._cache:
            arr = self._res._field(method, self._metric)
            mean, _ = nanmean0(arr)
            mean.flags.writeable = False
            self._cache[method] = mean
        return self._cache[method]

    def __iter__(self):
        return iter(self._res.methods)

    def __len__(self) -> int:
        return len(self._res.methods)

    def __repr__(self) -> str:
        return f"<{self._metric} means for {', '.join(self._res.methods)}>"


class Results:
    """Per-example and per-layer results of ``model.evaluate``; see the module docstring."""

    def __init__(self, methods, layers, data, meta=None, target_layers=None):
        self.methods = [str(m) for m in methods]
        self.layers = [int(l) for l in layers]
        self.meta = dict(meta or {})
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"Results: duplicate method names in {self.methods}")
        self.target_layers = _target_layers_by_method(self.methods, target_layers)
        self._data, n_prompts = self._checked_data(data)
        self.n_prompts = int(n_prompts if n_prompts is not None else self.meta.get("n_prompts", 0))
        self.prec1 = MetricView(self, "prec1")
        self.surprisal = MetricView(self, "surprisal")
        self.paper_surprisal = MetricView(self, "paper_surprisal")

    # ---------------------------------------------------------------- checks of the constructor
    def _checked_data(self, data) -> tuple[dict[str, dict[str, np.ndarray]], int | None]:
        """The arrays of every method, checked, and the number of prompts (None without arrays)."""
        extra = set(data) - set(self.methods)
        if extra:
            raise ValueError(f"Results: data has methods {sorted(extra)} not listed in methods {self.methods}")
        out, first = {}, None  # first: (name, n_prompts) of the first array
        for m in self.methods:
            if m not in data:
                raise ValueError(f"Results: no data for method {m!r}")
            _check_required_fields(m, data[m])
            arrays = {}
            for f, a in data[m].items():
                a = self._checked_array(m, f, a)
                first = first or (f"{m}.{f}", a.shape[0])
                if a.shape[0] != first[1]:
                    raise ValueError(f"Results: {m}.{f} has {a.shape[0]} prompts but {first[0]} has {first[1]}")
                arrays[str(f)] = a
            self._check_metric_shapes(m, arrays)
            out[m] = arrays
        return out, (None if first is None else first[1])

    def _checked_array(self, m: str, f, a) -> np.ndarray:
        """``a`` as an array if it is numeric and (n_prompts,) + the method's shape (or, for a grid
        method, + (n_layers,): a per-source-layer field)."""
        a = np.asarray(a)
        if a.dtype.kind not in "fiub":
            raise ValueError(f"Results: {m}.{f} has non-numeric dtype {a.dtype}")
        want = self._shape(m)
        ok = a.shape[1:] == want or (self.target_layers[m] is not None and a.shape[1:] == want[:1])
        if a.ndim < 1 or not ok:
            raise ValueError(f"Results: {m}.{f} has shape {a.shape}, want (n_prompts,)+{want}")
        return a

    def _check_metric_shapes(self, m: str, arrays: dict) -> None:
        """Metrics must have the method's full (grid) shape."""
        for f in METRICS:
            if arrays[f].shape[1:] != self._shape(m):
                raise ValueError(f"Results: {m}.{f} has shape {arrays[f].shape}, want (n_prompts,)+{self._shape(m)}")

    # ---------------------------------------------------------------- access
    def _shape(self, method: str) -> tuple:
        t = self.target_layers[method]
        return (len(self.layers),) if t is None else (len(self.layers), len(t))

    def is_grid(self, method: str) -> bool:
        self._check_method(method)
        return self.target_layers[method] is not None

    @property
    def grid_methods(self) -> list[str]:
        return [m for m in self.methods if self.target_layers[m] is not None]

    @property
    def line_methods(self) -> list[str]:
        return [m for m in self.methods if self.target_layers[m] is None]

    def _check_method(self, method: str) -> None:
        if method not in self._data:
            raise unknown_name("method", method, self.methods)

    def _field(self, method: str, field: str) -> np.ndarray:
        self._check_method(method)
        return self._data[method][field]

    def metric(self, metric: str) -> MetricView:
        """``res.metric("surprisal")`` is ``res.surprisal``; unknown names raise UnknownNameError."""
        return getattr(self, check_metric(metric))

    def per_example(self, method: str) -> dict[str, np.ndarray]:
        """Arrays of one method, each ``(n_prompts, n_layers[, n_target_layers])``, read-only views."""
        self._check_method(method)
        out = {}
        for f, a in self._data[method].items():
            v = a.view()
            v.flags.writeable = False
            out[f] = v
        return out

    def counts(self, method: str) -> np.ndarray:
        """Number of prompts with a computed prec1 per layer (per layer pair for a grid)."""
        return nanmean0(self._field(method, "prec1"))[1]

    # ---------------------------------------------------------------- tables
    def to_pandas(self, per_example: bool = False):
        """Long DataFrame: one row per (method, layer[, target_layer]) with the means and n, or with
        ``per_example=True`` one row per (method, prompt, layer[, target_layer]) with every field."""
        import pandas as pd

        grid = bool(self.grid_methods)
        frames = [pd.DataFrame(self._columns(m, per_example, grid)) for m in self.methods]
        if not frames:
            return pd.DataFrame(columns=["method", "layer"] + list(METRICS) + ["n"])
        return pd.concat(frames, ignore_index=True)

    def _columns(self, m: str, per_example: bool, grid: bool) -> dict:
        """The to_pandas columns of one method's rows."""
        cols, layer_i, target_i = self._key_columns(m, per_example)
        cols["layer"] = np.asarray(self.layers, dtype=np.int64)[layer_i]
        if grid:
            cols["target_layer"] = self._target_layer_column(m, layer_i, target_i)
        cols.update(self._example_columns(m) if per_example else self._mean_columns(m))
        return cols

    def _key_columns(self, m: str, per_example: bool) -> tuple[dict, np.ndarray, np.ndarray | None]:
        """The method (and prompt) columns of one method's rows, and each row's layer index and
        target-layer index (None for an ordinary method)."""
        shape = self._shape(m)
        idx = np.indices(shape).reshape(len(shape), -1)  # (ndim, cells)
        target_i = idx[1] if len(shape) == 2 else None
        if not per_example:
            return {"method": np.full(idx.shape[1], m, dtype=object)}, idx[0], target_i
        P = self.n_prompts
        cols = {"method": np.full(P * idx.shape[1], m, dtype=object),
                "prompt": np.repeat(np.arange(P, dtype=np.int64), idx.shape[1])}
        return cols, np.tile(idx[0], P), (None if target_i is None else np.tile(target_i, P))

    def _target_layer_column(self, m: str, layer_i: np.ndarray, target_i: np.ndarray | None):
        """Nullable target layers (NA for the rows of an ordinary method)."""
        import pandas as pd

        if target_i is None:
            return pd.array([pd.NA] * len(layer_i), dtype="Int64")
        return pd.array(np.asarray(self.target_layers[m], dtype=np.int64)[target_i], dtype="Int64")

    def _example_columns(self, m: str) -> dict:
        """Every field of one method, flattened to one value a (prompt, layer[, target]) row."""
        shape = self._shape(m)
        cols = {}
        for f, a in self._data[m].items():
            if a.shape[1:] != shape:  # per-source-layer array of a grid method: broadcast
                a = np.broadcast_to(a[..., None], a.shape + shape[1:])
            cols[f] = a.reshape(-1)
        return cols

    def _mean_columns(self, m: str) -> dict:
        """The per-layer means of one method and the number of prompts behind each."""
        cols = {f: getattr(self, f)[m].reshape(-1) for f in METRICS}
        cols["n"] = self.counts(m).reshape(-1)
        return cols

    def table(self, metric=None) -> str:
        """Plain-text per-layer table (layers as rows, methods x metrics as columns)."""
        metrics = _table_metrics(metric)
        lines = self.line_methods
        head = ["layer"] + [f"{m} {mt}" for mt in metrics for m in lines]
        rows = [[str(layer)] + [_cell(getattr(self, mt)[m][i], mt) for mt in metrics for m in lines]
                for i, layer in enumerate(self.layers)]
        if lines:
            rows.append(["mean"] + [_cell(self._mean_over_layers(mt, m), mt) for mt in metrics for m in lines])
        widths = [max(len(r[j]) for r in [head] + rows) for j in range(len(head))]
        fmt = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))
        out = [f"{self.n_prompts} prompts, {len(self.layers)} layers", fmt(head), fmt(["-" * w for w in widths])]
        out += [fmt(r) for r in rows[:-1]]
        if lines:
            out += [fmt(["-" * w for w in widths]), fmt(rows[-1])]
        if self.grid_methods:
            out.append(f"grid methods (see to_pandas / plot(method=...)): {', '.join(self.grid_methods)}")
        return "\n".join(out)

    def _mean_over_layers(self, metric: str, m: str) -> float:
        """The mean of a line method's per-layer means (NaN without layers)."""
        return float(nanmean0(getattr(self, metric)[m])[0]) if len(self.layers) else float("nan")

    def plot(self, metric: str = "prec1", ax=None, path=None, method=None, title=None):
        """Lines across layers for the ordinary methods, or a heatmap for ``method=<grid method>``;
        returns the matplotlib Figure and, if ``path`` is given, saves it (PNG, dpi 120)."""
        return plots.plot(self, metric=metric, ax=ax, path=path, method=method, title=title)

    # ---------------------------------------------------------------- comparison
    def compare_published(self, methods=None, by: str | None = None, path=None, plot: bool = True, file=None):
        """Prints, layer by layer, these results next to the published GPT-J 6B figures (shipped
        with the package; simplescope's "simplescope" is their "logitscope") with the difference,
        draws both (saved to ``path`` if given) and returns the table as a DataFrame (see
        :mod:`simplescope.published`).  ``by``: "layer" (a 28-layer model), "depth" (equal
        relative depth, for another depth: not a direct comparison, said above the table) or
        None (whichever applies)."""
        from . import published
        return published.compare_and_report(self, methods=methods, by=by, path=path, file=file, show_plot=plot)

    def allclose(self, other: "Results", rtol: float = 1e-7, atol: float = 0.0, check_meta: bool = True) -> bool:
        """Same methods, layers, target layers, fields, dtypes, shapes and values (NaN == NaN)."""
        if (self.methods, self.layers, self.target_layers) != (other.methods, other.layers, other.target_layers):
            return False
        if check_meta and results_io.plain(self.meta, True) != results_io.plain(other.meta, True):
            return False
        for m in self.methods:
            a, b = self._data[m], other._data[m]
            if set(a) != set(b):
                return False
            for f in a:
                if a[f].dtype != b[f].dtype or a[f].shape != b[f].shape:
                    return False
                if not np.allclose(a[f], b[f], rtol=rtol, atol=atol, equal_nan=True):
                    return False
        return True

    def __repr__(self) -> str:
        parts = []
        for m in self.methods:
            if self.target_layers[m] is None:
                v = nanmean0(self.prec1[m])[0] if len(self.layers) else float("nan")
                parts.append(f"{m} {float(v):.3f}")
            else:
                parts.append(f"{m} (grid x{len(self.target_layers[m])})")
        lay = f"{self.layers[0]}..{self.layers[-1]}" if self.layers else "-"
        return (f"<Results {self.n_prompts} prompts, {len(self.layers)} layers {lay}; "
                f"mean prec1: {', '.join(parts) or 'no methods'}>")

    # ---------------------------------------------------------------- files (simplescope.results_io)
    def save(self, path) -> list[str]:
        """Write ``*.json`` (readable), ``*.msgpack`` (compact, bit-exact) or, for a directory,
        both results.json and results.msgpack inside it.  Each file is written atomically.
        Returns the paths written."""
        return results_io.save(self, path)

    @classmethod
    def load(cls, path) -> "Results":
        """Read a file written by :meth:`save` (.json, .msgpack or a directory holding one)."""
        return results_io.load(path, cls)


# -------------------------------------------------------------------- helpers

def _target_layers_by_method(methods: list[str], target_layers) -> dict[str, list[int] | None]:
    """Every method's target layer ids (None for an ordinary method), checked against ``methods``."""
    tl = dict(target_layers or {})
    for m in tl:
        if m not in methods:
            raise ValueError(f"Results: target_layers names method {m!r} which is not in methods {methods}")
    return {m: (None if tl.get(m) is None else [int(t) for t in tl[m]]) for m in methods}


def _check_required_fields(m: str, arrays) -> None:
    for f in FIELDS:
        if f not in arrays:
            raise ValueError(f"Results: method {m!r} lacks field {f!r} (needs {', '.join(FIELDS)})")


def _table_metrics(metric) -> tuple[str, ...]:
    """The metrics a table shows: prec1 and surprisal by default, or the one or several named."""
    metrics = ("prec1", "surprisal") if metric is None else ((metric,) if isinstance(metric, str) else tuple(metric))
    for mt in metrics:
        check_metric(mt)
    return metrics


def _cell(v, metric: str) -> str:
    """A table cell: prec1 with 3 decimals, surprisals with 2, "nan" where there is no value."""
    v = float(v)
    return "nan" if math.isnan(v) else (f"{v:.3f}" if metric == "prec1" else f"{v:.2f}")
