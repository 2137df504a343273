"""Results of a Patchscope evaluation: per-example arrays, per-layer means, tables, plots, files.

A :class:`Results` is built by the engine from plain data::

    Results(methods, layers, data, meta, target_layers=None)

``data[method][field]`` is an array of shape ``(n_prompts, n_layers)`` for an ordinary method, or
``(n_prompts, n_layers, n_target_layers)`` for a grid method (source layer x target layer, whose
target layer ids are ``target_layers[method]``).  The fields are

- ``prec1``           float, 1.0 where the patched argmax equals the source argmax, NaN where not computed
- ``surprisal``       float, -ln p_patched(source top-1)      (simplescope's definition)
- ``paper_surprisal`` float, -ln p_source(patched top-1)      (the Patchscopes paper's code)
- ``position``, ``source_top1``, ``patched_top1``  int64

Extra fields are kept and saved as they are.  Only numpy is imported at module level; pandas,
matplotlib and msgpack are imported by the functions that need them.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Mapping

import numpy as np

#: Metrics averaged per layer (float arrays, NaN where not computed).
METRICS = ("prec1", "surprisal", "paper_surprisal")
#: Integer bookkeeping arrays every method carries.
INT_FIELDS = ("position", "source_top1", "patched_top1")
FIELDS = METRICS + INT_FIELDS

FORMAT = "simplescope.results"
VERSION = 1
JSON_NAME = "results.json"
MSGPACK_NAME = "results.msgpack"


class UnknownNameError(KeyError, ValueError):
    """An unknown method, metric or field name; the message names it and the known ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def _unknown(kind: str, name, known) -> UnknownNameError:
    return UnknownNameError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(map(str, known)) or '(none)'}")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise _unknown("metric", metric, METRICS)
    return metric


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
        tl = dict(target_layers or {})
        for m in tl:
            if m not in self.methods:
                raise ValueError(f"Results: target_layers names method {m!r} which is not in methods {self.methods}")
        self.target_layers = {m: (None if tl.get(m) is None else [int(t) for t in tl[m]]) for m in self.methods}
        extra = set(data) - set(self.methods)
        if extra:
            raise ValueError(f"Results: data has methods {sorted(extra)} not listed in methods {self.methods}")
        self._data: dict[str, dict[str, np.ndarray]] = {}
        n_prompts = None
        for m in self.methods:
            if m not in data:
                raise ValueError(f"Results: no data for method {m!r}")
            arrays = {}
            for f in FIELDS:
                if f not in data[m]:
                    raise ValueError(f"Results: method {m!r} lacks field {f!r} (needs {', '.join(FIELDS)})")
            for f, a in data[m].items():
                a = np.asarray(a)
                if a.dtype.kind not in "fiub":
                    raise ValueError(f"Results: {m}.{f} has non-numeric dtype {a.dtype}")
                want = self._shape(m)
                ok = a.shape[1:] == want or (self.target_layers[m] is not None and a.shape[1:] == want[:1])
                if a.ndim < 1 or not ok:
                    raise ValueError(f"Results: {m}.{f} has shape {a.shape}, want (n_prompts,)+{want}")
                if n_prompts is None:
                    n_prompts, first = a.shape[0], f"{m}.{f}"
                elif a.shape[0] != n_prompts:
                    raise ValueError(f"Results: {m}.{f} has {a.shape[0]} prompts but {first} has {n_prompts}")
                arrays[str(f)] = a
            for f in METRICS:  # metrics must have the full (grid) shape
                if arrays[f].shape[1:] != self._shape(m):
                    raise ValueError(f"Results: {m}.{f} has shape {arrays[f].shape}, want (n_prompts,)+{self._shape(m)}")
            self._data[m] = arrays
        self.n_prompts = int(n_prompts if n_prompts is not None else self.meta.get("n_prompts", 0))
        self.prec1 = MetricView(self, "prec1")
        self.surprisal = MetricView(self, "surprisal")
        self.paper_surprisal = MetricView(self, "paper_surprisal")

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
            raise _unknown("method", method, self.methods)

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
        frames = []
        for m in self.methods:
            shape = self._shape(m)
            idx = np.indices(shape).reshape(len(shape), -1)  # (ndim, cells)
            cols = {}
            if per_example:
                P = self.n_prompts
                cols["method"] = np.full(P * idx.shape[1], m, dtype=object)
                cols["prompt"] = np.repeat(np.arange(P, dtype=np.int64), idx.shape[1])
                layer_i = np.tile(idx[0], P)
                target_i = np.tile(idx[1], P) if len(shape) == 2 else None
            else:
                cols["method"] = np.full(idx.shape[1], m, dtype=object)
                layer_i, target_i = idx[0], (idx[1] if len(shape) == 2 else None)
            cols["layer"] = np.asarray(self.layers, dtype=np.int64)[layer_i]
            if grid:
                if target_i is None:
                    cols["target_layer"] = pd.array([pd.NA] * len(layer_i), dtype="Int64")
                else:
                    cols["target_layer"] = pd.array(np.asarray(self.target_layers[m], dtype=np.int64)[target_i], dtype="Int64")
            if per_example:
                for f, a in self._data[m].items():
                    if a.shape[1:] != shape:  # per-source-layer array of a grid method: broadcast
                        a = np.broadcast_to(a[..., None], a.shape + shape[1:])
                    cols[f] = a.reshape(-1)
            else:
                for f in METRICS:
                    cols[f] = getattr(self, f)[m].reshape(-1)
                cols["n"] = self.counts(m).reshape(-1)
            frames.append(pd.DataFrame(cols))
        if not frames:
            return pd.DataFrame(columns=["method", "layer"] + list(METRICS) + ["n"])
        return pd.concat(frames, ignore_index=True)

    def table(self, metric=None) -> str:
        """Plain-text per-layer table (layers as rows, methods x metrics as columns)."""
        metrics = ("prec1", "surprisal") if metric is None else ((metric,) if isinstance(metric, str) else tuple(metric))
        for mt in metrics:
            check_metric(mt)
        lines = self.line_methods
        head = ["layer"] + [f"{m} {mt}" for mt in metrics for m in lines]
        rows = []
        for i, layer in enumerate(self.layers):
            row = [str(layer)]
            for mt in metrics:
                for m in lines:
                    v = float(getattr(self, mt)[m][i])
                    row.append("nan" if math.isnan(v) else (f"{v:.3f}" if mt == "prec1" else f"{v:.2f}"))
            rows.append(row)
        if lines:
            row = ["mean"]
            for mt in metrics:
                for m in lines:
                    v = float(nanmean0(getattr(self, mt)[m])[0]) if len(self.layers) else float("nan")
                    row.append("nan" if math.isnan(v) else (f"{v:.3f}" if mt == "prec1" else f"{v:.2f}"))
            rows.append(row)
        widths = [max(len(r[j]) for r in [head] + rows) for j in range(len(head))]
        fmt = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))
        out = [f"{self.n_prompts} prompts, {len(self.layers)} layers", fmt(head), fmt(["-" * w for w in widths])]
        out += [fmt(r) for r in rows[:-1]]
        if lines:
            out += [fmt(["-" * w for w in widths]), fmt(rows[-1])]
        if self.grid_methods:
            out.append(f"grid methods (see to_pandas / plot(method=...)): {', '.join(self.grid_methods)}")
        return "\n".join(out)

    def plot(self, metric: str = "prec1", ax=None, path=None, method=None, title=None):
        """Lines across layers for the ordinary methods, or a heatmap for ``method=<grid method>``;
        returns the matplotlib Figure and, if ``path`` is given, saves it (PNG, dpi 120)."""
        from . import plots

        return plots.plot(self, metric=metric, ax=ax, path=path, method=method, title=title)

    # ---------------------------------------------------------------- comparison
    def allclose(self, other: "Results", rtol: float = 1e-7, atol: float = 0.0, check_meta: bool = True) -> bool:
        """Same methods, layers, target layers, fields, dtypes, shapes and values (NaN == NaN)."""
        if (self.methods, self.layers, self.target_layers) != (other.methods, other.layers, other.target_layers):
            return False
        if check_meta and _plain(self.meta, True) != _plain(other.meta, True):
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

    # ---------------------------------------------------------------- files
    def save(self, path) -> list[str]:
        """Write ``*.json`` (readable), ``*.msgpack`` (compact, bit-exact) or, for a directory,
        both results.json and results.msgpack inside it.  Each file is written atomically.
        Returns the paths written."""
        path = os.fspath(path)
        low = path.lower()
        if low.endswith(".json"):
            targets = [(path, self._write_json)]
        elif low.endswith(".msgpack"):
            targets = [(path, self._write_msgpack)]
        elif os.path.isdir(path) or not os.path.splitext(path)[1]:
            targets = [(os.path.join(path, JSON_NAME), self._write_json),
                       (os.path.join(path, MSGPACK_NAME), self._write_msgpack)]
        else:
            raise ValueError(f"Results.save: {path!r} is neither a .json or .msgpack file nor a directory")
        written = []
        for p, writer in targets:
            parent = os.path.dirname(os.path.abspath(p))
            os.makedirs(parent, exist_ok=True)
            try:
                _atomic_write(p, writer, binary=writer == self._write_msgpack)
            except (ValueError, TypeError) as e:
                raise type(e)(f"Results.save {p}: {e}") from e
            written.append(p)
        return written

    @classmethod
    def load(cls, path) -> "Results":
        """Read a file written by :meth:`save` (.json, .msgpack or a directory holding one)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            for name in (MSGPACK_NAME, JSON_NAME):
                if os.path.exists(os.path.join(path, name)):
                    return cls.load(os.path.join(path, name))
            raise FileNotFoundError(f"Results.load: directory {path!r} holds neither {MSGPACK_NAME} nor {JSON_NAME}")
        low = path.lower()
        try:
            if low.endswith(".msgpack"):
                import msgpack

                with open(path, "rb") as f:
                    doc = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
                decode = _array_from_msgpack
            elif low.endswith(".json"):
                with open(path, encoding="utf-8") as f:
                    doc = json.load(f)
                decode = _array_from_json
            else:
                raise ValueError("expected a .json or .msgpack file or a directory")
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file (format={doc.get('format') if isinstance(doc, dict) else None!r})")
            if doc.get("version") != VERSION:
                raise ValueError(f"unsupported version {doc.get('version')!r} (this reader knows {VERSION})")
            data = {m: {f: decode(enc, f"{m}.{f}") for f, enc in fields.items()} for m, fields in doc["per_example"].items()}
            return cls(doc["methods"], doc["layers"], data, doc.get("meta") or {}, doc.get("target_layers"))
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"Results.load {path}: {e}") from e

    def _header(self, nan_to_none: bool) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "methods": list(self.methods),
            "layers": list(self.layers),
            "target_layers": dict(self.target_layers),
            "n_prompts": self.n_prompts,
            "meta": _plain(self.meta, nan_to_none),
        }

    def _summary(self) -> dict:
        out = {}
        for m in self.methods:
            s = {f: getattr(self, f)[m] for f in METRICS}
            s["n"] = self.counts(m)
            out[m] = s
        return out

    def _write_json(self, f) -> None:
        doc = self._header(True)
        doc["summary"] = self._summary()
        doc["per_example"] = {m: {k: {"dtype": a.dtype.name, "shape": list(a.shape), "data": a}
                                  for k, a in self._data[m].items()} for m in self.methods}
        for chunk in _json_chunks(doc, 0):
            f.write(chunk)
        f.write("\n")

    def _write_msgpack(self, f) -> None:
        import msgpack

        doc = self._header(False)
        doc["per_example"] = {m: {k: _array_to_msgpack(a) for k, a in self._data[m].items()} for m in self.methods}
        f.write(msgpack.packb(doc, use_bin_type=True))


# -------------------------------------------------------------------- file helpers

def _atomic_write(path: str, writer, binary: bool) -> None:
    """Write through ``writer(fileobj)`` into a temp file beside ``path``, fsync, then os.replace.
    On any failure the temp file is removed and ``path`` is left as it was."""
    folder, name = os.path.split(os.path.abspath(path))
    while True:  # like tempfile.mkstemp, but mode 0666 & ~umask as an ordinary file gets
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _plain(obj, nan_to_none: bool):
    """Meta as plain JSON/msgpack types: numpy scalars/arrays -> Python, tuples -> lists,
    (for JSON) non-finite floats -> None.  Other types raise TypeError naming them."""
    if isinstance(obj, dict):
        return {str(k): _plain(v, nan_to_none) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, nan_to_none) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist(), nan_to_none)
    if isinstance(obj, np.generic):
        return _plain(obj.item(), nan_to_none)
    if isinstance(obj, float):
        return None if nan_to_none and not math.isfinite(obj) else obj
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    raise TypeError(f"meta value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


def _json_scalar(x) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "null"
        if math.isinf(x):
            return '"Infinity"' if x > 0 else '"-Infinity"'
        return repr(x)  # shortest repr: parses back to the same float64 (and so the same float32)
    return json.dumps(x, ensure_ascii=False)


def _json_chunks(obj, depth: int):
    """Readable JSON: dicts one key a line, arrays one innermost row a line, floats repr-exact,
    NaN as null and +-inf as the strings "Infinity"/"-Infinity"."""
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(obj, np.ndarray):
        yield from _json_array(obj.tolist(), _scalar_formatter(obj), depth)
        return
    if isinstance(obj, dict):
        if not obj:
            yield "{}"
            return
        yield "{\n"
        for i, (k, v) in enumerate(obj.items()):
            yield f"{inner}{json.dumps(str(k), ensure_ascii=False)}: "
            yield from _json_chunks(v, depth + 1)
            yield ",\n" if i + 1 < len(obj) else "\n"
        yield pad + "}"
    elif isinstance(obj, list):
        if all(not isinstance(v, (list, dict, np.ndarray)) for v in obj):
            yield "[" + ", ".join(_json_scalar(v) for v in obj) + "]"
            return
        yield "[\n"
        for i, v in enumerate(obj):
            yield inner
            yield from _json_chunks(v, depth + 1)
            yield ",\n" if i + 1 < len(obj) else "\n"
        yield pad + "]"
    else:
        yield _json_scalar(obj)


def _scalar_formatter(a: np.ndarray):
    """The cheapest exact formatter for the elements of ``a``."""
    if a.dtype.kind == "f" and np.isfinite(a).all():
        return float.__repr__
    if a.dtype.kind in "iu":
        return int.__repr__
    return _json_scalar


def _json_array(lst, fmt, depth: int):
    if not lst or not isinstance(lst[0], list):
        yield "[" + ", ".join(map(fmt, lst)) + "]"
        return
    pad, inner = "  " * depth, "  " * (depth + 1)
    yield "[\n"
    for i, v in enumerate(lst):
        yield inner
        yield from _json_array(v, fmt, depth + 1)
        yield ",\n" if i + 1 < len(lst) else "\n"
    yield pad + "]"


def _array_from_json(enc: dict, what: str) -> np.ndarray:
    dtype, shape = np.dtype(enc["dtype"]), tuple(int(s) for s in enc["shape"])
    # numpy reads null as NaN and "Infinity"/"-Infinity" as +-inf when the target is float64
    arr = np.array(enc["data"], dtype=np.float64 if dtype.kind == "f" else dtype)
    if arr.size != math.prod(shape) or (arr.size and arr.shape != shape):
        raise ValueError(f"{what}: data of shape {arr.shape} for declared shape {shape}")
    return arr.astype(dtype).reshape(shape)


def _array_to_msgpack(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    le = a.dtype.newbyteorder("<")  # stored little-endian whatever the machine
    return {"dtype": le.str, "shape": list(a.shape), "data": a.astype(le, copy=False).tobytes()}


def _array_from_msgpack(enc: dict, what: str) -> np.ndarray:
    dtype, shape = np.dtype(enc["dtype"]), tuple(int(s) for s in enc["shape"])
    buf = enc["data"]
    if len(buf) != dtype.itemsize * math.prod(shape):
        raise ValueError(f"{what}: {len(buf)} bytes for {dtype} shape {shape}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
