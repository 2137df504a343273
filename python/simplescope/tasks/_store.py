"""Results of a task and the folder a run writes as it goes (resumable output).

A task's result is a per-example DataFrame plus a plain ``meta`` dict. On disk it is a folder:

    run.json              format, version, kind, settings (what must match to resume), meta
    parts/00000.msgpack   the per-example rows, one file per finished unit of work
    summary.csv           the per-layer (pair) means, for reading
    *.png                 the task's figures

Parts are written atomically as each unit (one or more finished layer pairs) completes, so an
interrupted run keeps everything finished before the interruption; running the same call with the
same ``out`` again reads the parts, skips the finished layer pairs and does the rest. A folder that
holds a run with other settings (another task, model, row selection, ...) is refused before any
work starts.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from .._atomic import atomic_write
from ..results_io import plain

FORMAT = "simplescope.task"
VERSION = 1
RUN_JSON = "run.json"
PARTS = "parts"
SUMMARY_CSV = "summary.csv"

_KINDS: dict[str, type] = {}


def register(kind: str):
    """Class decorator: the TaskResult subclass that loads runs of ``kind``."""
    def deco(cls):
        cls.kind = kind
        _KINDS[kind] = cls
        return cls
    return deco


class TaskResult:
    """``df``: one row per example (and layer pair); ``meta``: the run's settings and counts.
    Subclasses add ``summary()`` (per-layer means as a DataFrame) and ``plot()``."""

    kind = "task"
    #: the columns that name one unit of work (a layer pair); a resumed run skips those present
    pair_columns: tuple = ("layer_source", "layer_target")

    def __init__(self, df, meta=None):
        self.df = df
        self.meta = dict(meta or {})

    def __repr__(self):
        return f"<{type(self).__name__} {len(self.df)} rows, {len(self.pairs())} layer pairs>"

    def __len__(self):
        return len(self.df)

    def pairs(self) -> list[tuple]:
        """The finished layer pairs, sorted."""
        if self.df is None or not len(self.df):
            return []
        keys = self.df[list(self.pair_columns)].drop_duplicates().itertuples(index=False, name=None)
        return sorted(tuple(int(v) for v in k) for k in keys)

    def summary(self):
        raise NotImplementedError

    def figures(self) -> list[tuple[str, object]]:
        """(file name, callable(path)) of the figures a run writes."""
        return []

    # ------------------------------------------------------------------ files
    def save(self, path) -> list[str]:
        """Writes the folder ``path`` (run.json, one part with every row, summary.csv): what
        :meth:`load` reads. Parts already in the folder are replaced."""
        path = os.fspath(path)
        folder = RunFolder(path, self.kind, self.meta.get("settings", {}), create=True, check=False)
        old = folder.part_files()
        written = [folder.write_part(self.df, index=0 if not old else _next_index(old))]
        for f in old:
            if os.path.abspath(f) != os.path.abspath(written[0]):
                os.unlink(f)
        written.append(folder.write_meta(self.meta, status="complete"))
        written.append(write_summary(self, path))
        return written

    @classmethod
    def load(cls, path) -> "TaskResult":
        """Reads a folder written by a task run or :meth:`save` (the subclass from its kind)."""
        path = os.fspath(path)
        if os.path.isfile(path) and os.path.basename(path) == RUN_JSON:
            path = os.path.dirname(path) or "."
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no task result folder at {path!r}")
        doc = read_run_json(path)
        kind = doc.get("kind")
        klass = _KINDS.get(kind)
        if klass is None:
            raise ValueError(f"{path}: unknown task kind {kind!r} (known: {', '.join(sorted(_KINDS))})")
        if cls is not TaskResult and not issubclass(klass, cls):
            raise ValueError(f"{path} holds a {kind} result, not {cls.kind}")
        meta = dict(doc.get("meta") or {})
        meta["settings"] = doc.get("settings") or {}
        return klass(sort_rows(RunFolder.read_parts(path), klass.pair_columns), meta)


def sort_rows(df, pair_columns):
    """Rows in (layer pair, sample) order, whatever order the parts were written in."""
    keys = [c for c in list(pair_columns) + ["sample"] if c in df.columns]
    if not len(df) or not keys:
        return df
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def _next_index(files) -> int:
    return max(int(re.findall(r"(\d+)", os.path.basename(f))[0]) for f in files) + 1


def read_run_json(path: str) -> dict:
    p = os.path.join(path, RUN_JSON)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{path} holds no {RUN_JSON} (not a task result folder)")
    with open(p, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{p}: not a {FORMAT} file")
    if doc.get("version") != VERSION:
        raise ValueError(f"{p}: unsupported version {doc.get('version')!r} (this reader knows {VERSION})")
    return doc


def _normal(x):
    """Settings as JSON would give them back (for comparing a stored run with a new one)."""
    return json.loads(json.dumps(plain(x, True), sort_keys=True))


class RunFolder:
    """The output folder of one run: settings checked on open, parts appended as work finishes."""

    def __init__(self, path: str, kind: str, settings: dict, create: bool = True, check: bool = True):
        self.path = os.fspath(path)
        self.kind = kind
        self.settings = _normal(settings)
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"out {self.path} exists and is not a folder")
        if check and os.path.exists(os.path.join(self.path, RUN_JSON)):
            self._check_same_run(read_run_json(self.path))
        elif check and self.part_files():
            raise ValueError(f"out {self.path} holds result parts but no {RUN_JSON}; choose another folder")
        if create:
            os.makedirs(os.path.join(self.path, PARTS), exist_ok=True)

    def _check_same_run(self, doc: dict) -> None:
        if doc.get("kind") != self.kind:
            raise ValueError(f"out {self.path} holds a {doc.get('kind')} run, not {self.kind}; "
                             "choose another folder")
        old = doc.get("settings") or {}
        for k in sorted(set(old) | set(self.settings)):
            if old.get(k) != self.settings.get(k):
                raise ValueError(f"out {self.path} holds a run with other settings ({k}: {old.get(k)!r} there, "
                                 f"{self.settings.get(k)!r} now); choose another folder or delete it")

    def part_files(self) -> list[str]:
        d = os.path.join(self.path, PARTS)
        if not os.path.isdir(d):
            return []
        return sorted(os.path.join(d, n) for n in os.listdir(d) if re.fullmatch(r"\d+\.msgpack", n))

    def write_part(self, df, index: int | None = None) -> str:
        if index is None:
            files = self.part_files()
            index = _next_index(files) if files else 0
        p = os.path.join(self.path, PARTS, f"{index:05d}.msgpack")
        blob = encode_frame(df)
        atomic_write(p, lambda f: f.write(blob), binary=True)
        return p

    def write_meta(self, meta: dict, status: str) -> str:
        meta = {k: v for k, v in meta.items() if k != "settings"}
        doc = {"format": FORMAT, "version": VERSION, "kind": self.kind, "status": status,
               "settings": self.settings, "meta": plain(meta, True)}
        p = os.path.join(self.path, RUN_JSON)
        atomic_write(p, lambda f: json.dump(doc, f, indent=1, ensure_ascii=False), binary=False)
        return p

    def frames(self) -> list:
        return [decode_frame(_read(p), p) for p in self.part_files()]

    @staticmethod
    def read_parts(path: str):
        import pandas as pd
        frames = RunFolder(path, "", {}, create=False, check=False).frames()
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)


def _read(p: str) -> bytes:
    with open(p, "rb") as f:
        return f.read()


# ---------------------------------------------------------------------- frames as msgpack

def encode_frame(df) -> bytes:
    """A DataFrame as msgpack: numeric and bool columns as little-endian bytes, strings as lists."""
    import msgpack
    cols = []
    for name in df.columns:
        s = df[name]
        kind = s.dtype.kind
        if kind in "biuf":
            a = np.ascontiguousarray(s.to_numpy())
            le = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
            cols.append({"name": str(name), "dtype": le.str, "data": a.astype(le, copy=False).tobytes()})
        else:
            vals = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in s.tolist()]
            cols.append({"name": str(name), "dtype": "str", "data": vals})
    return msgpack.packb({"format": FORMAT + ".part", "n": int(len(df)), "columns": cols}, use_bin_type=True)


def decode_frame(blob: bytes, what: str = "part"):
    import msgpack
    import pandas as pd
    try:
        doc = msgpack.unpackb(blob, raw=False)
        if doc.get("format") != FORMAT + ".part":
            raise ValueError("not a task result part")
        n = int(doc["n"])
        data = {}
        for c in doc["columns"]:
            if c["dtype"] == "str":
                v = list(c["data"])
            else:
                dt = np.dtype(c["dtype"])
                v = np.frombuffer(c["data"], dtype=dt).astype(dt.newbyteorder("="))
            if len(v) != n:
                raise ValueError(f"column {c['name']} has {len(v)} values for {n} rows")
            data[c["name"]] = v
        return pd.DataFrame(data)
    except Exception as e:  # a damaged file: name it
        raise ValueError(f"{what}: cannot read ({e})") from None


def write_summary(res: TaskResult, path: str) -> str:
    p = os.path.join(path, SUMMARY_CSV)
    text = res.summary().to_csv(index=False)
    atomic_write(p, lambda f: f.write(text), binary=False)
    return p


def write_figures(res: TaskResult, path: str) -> list[str]:
    import matplotlib.pyplot as plt  # the figures come from plots._new_figure (Agg when headless)
    out = []
    for name, draw in res.figures():
        p = os.path.join(path, name)
        fig = draw(p)
        plt.close(fig)
        out.append(p)
    return out
