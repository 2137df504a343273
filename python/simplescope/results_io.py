"""Files of a :class:`~simplescope.results.Results`: ``*.json`` (readable), ``*.msgpack`` (compact,
bit-exact), or a folder holding both (results.json and results.msgpack).

    save(res, path) -> the paths written      (Results.save delegates here)
    load(path, make) -> make(methods, layers, data, meta, target_layers)   (Results.load: make=Results)

Both formats hold the same document: ``format``, ``version``, ``methods``, ``layers``,
``target_layers``, ``n_prompts``, ``meta`` and ``per_example[method][field]`` = {dtype, shape, data};
the JSON adds the per-layer means under ``summary``.  Each file is written atomically.  Only numpy is
imported at module level; msgpack is imported by the functions that need it.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ._atomic import atomic_write
from ._fields import METRICS

FORMAT = "simplescope.results"
VERSION = 1
JSON_NAME = "results.json"
MSGPACK_NAME = "results.msgpack"


# -------------------------------------------------------------------- save

def save(res, path) -> list[str]:
    """Write ``res`` to ``*.json``, ``*.msgpack`` or, for a directory, both results.json and
    results.msgpack inside it.  Each file is written atomically.  Returns the paths written."""
    written = []
    for p, writer in _save_targets(os.fspath(path)):
        os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
        try:
            atomic_write(p, lambda f: writer(res, f), binary=writer is write_msgpack)
        except (ValueError, TypeError) as e:
            raise type(e)(f"Results.save {p}: {e}") from e
        written.append(p)
    return written


def _save_targets(path: str) -> list[tuple]:
    """(file, writer) pairs for a save to ``path``, chosen by its extension."""
    low = path.lower()
    if low.endswith(".json"):
        return [(path, write_json)]
    if low.endswith(".msgpack"):
        return [(path, write_msgpack)]
    if os.path.isdir(path) or not os.path.splitext(path)[1]:
        return [(os.path.join(path, JSON_NAME), write_json), (os.path.join(path, MSGPACK_NAME), write_msgpack)]
    raise ValueError(f"Results.save: {path!r} is neither a .json or .msgpack file nor a directory")


def write_json(res, f) -> None:
    """The readable document of ``res`` (with per-layer means) into the text file ``f``."""
    doc = _header(res, True)
    doc["summary"] = _summary(res)
    doc["per_example"] = {m: {k: {"dtype": a.dtype.name, "shape": list(a.shape), "data": a}
                              for k, a in res.per_example(m).items()} for m in res.methods}
    for chunk in _json_chunks(doc, 0):
        f.write(chunk)
    f.write("\n")


def write_msgpack(res, f) -> None:
    """The compact document of ``res`` (arrays as little-endian bytes) into the binary file ``f``."""
    import msgpack

    doc = _header(res, False)
    doc["per_example"] = {m: {k: _array_to_msgpack(a) for k, a in res.per_example(m).items()} for m in res.methods}
    f.write(msgpack.packb(doc, use_bin_type=True))


def _header(res, nan_to_none: bool) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "methods": list(res.methods),
        "layers": list(res.layers),
        "target_layers": dict(res.target_layers),
        "n_prompts": res.n_prompts,
        "meta": plain(res.meta, nan_to_none),
    }


def _summary(res) -> dict:
    out = {}
    for m in res.methods:
        s = {f: res.metric(f)[m] for f in METRICS}
        s["n"] = res.counts(m)
        out[m] = s
    return out


# -------------------------------------------------------------------- load

def load(path, make):
    """Read a file written by :func:`save` (.json, .msgpack or a directory holding one) and
    return ``make(methods, layers, data, meta, target_layers)``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return load(_file_in_folder(path), make)
    try:
        doc, decode = _read_document(path)
        _check_header(doc)
        data = {m: {f: decode(enc, f"{m}.{f}") for f, enc in fields.items()} for m, fields in doc["per_example"].items()}
        return make(doc["methods"], doc["layers"], data, doc.get("meta") or {}, doc.get("target_layers"))
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"Results.load {path}: {e}") from e


def _file_in_folder(path: str) -> str:
    """The results file a folder holds (results.msgpack first)."""
    for name in (MSGPACK_NAME, JSON_NAME):
        if os.path.exists(os.path.join(path, name)):
            return os.path.join(path, name)
    raise FileNotFoundError(f"Results.load: directory {path!r} holds neither {MSGPACK_NAME} nor {JSON_NAME}")


def _read_document(path: str):
    """The parsed document of a .msgpack or .json file and the decoder of its arrays."""
    low = path.lower()
    if low.endswith(".msgpack"):
        import msgpack

        with open(path, "rb") as f:
            return msgpack.unpackb(f.read(), raw=False, strict_map_key=False), _array_from_msgpack
    if low.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return json.load(f), _array_from_json
    raise ValueError("expected a .json or .msgpack file or a directory")


def _check_header(doc) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file (format={doc.get('format') if isinstance(doc, dict) else None!r})")
    if doc.get("version") != VERSION:
        raise ValueError(f"unsupported version {doc.get('version')!r} (this reader knows {VERSION})")


# -------------------------------------------------------------------- encodings

def plain(obj, nan_to_none: bool):
    """Meta as plain JSON/msgpack types: numpy scalars/arrays -> Python, tuples -> lists,
    (for JSON) non-finite floats -> None.  Other types raise TypeError naming them."""
    if isinstance(obj, dict):
        return {str(k): plain(v, nan_to_none) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, nan_to_none) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist(), nan_to_none)
    if isinstance(obj, np.generic):
        return plain(obj.item(), nan_to_none)
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
