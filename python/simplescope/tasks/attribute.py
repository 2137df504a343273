"""Attribute extraction (Patchscopes §4.2): does the hidden state of a subject, taken from some
text that mentions it, carry an attribute that a target prompt can read out?

For every row of a task table and every (source layer, target layer), the hidden state of the
subject's last token in ``prompt_source`` (block output at the source layer, position
``position_source``) replaces the output of the target layer at the placeholder of
``prompt_target`` (``position_target``, from the end); the model then continues greedily for
``max_new_tokens`` tokens (10, as in the paper's code). A row is correct when ``object`` with its
spaces removed occurs in the generation with its spaces removed. No BOS is prepended (the paper's
GPT-J runs).

Rows are filtered as the paper's code does before the run (``load_task``):

1. ``only_correct=True`` keeps rows whose ``is_correct_baseline`` is true (off by default);
2. rows whose source prompt is empty are dropped (an artifact of the paper's saving and reloading);
3. rows whose source prompt contains a newline are dropped (the paper's reader lost the rest of
   such prompts);
4. star_constellation: rows whose source prompt contains "service" are dropped, and
   object_superclass: the row whose source prompt contains "Swainson ’ s hawk and the prairie"
   (both judged by the paper's authors to have tokenization problems).

``rows=`` then picks rows by position in that filtered table. Rows whose ``position_source`` lies
past the end of the (tokenized) source prompt are skipped and counted in
``meta["n_skipped_position"]`` (``skipped_rows`` lists their row ids); they come from source
prompts that were cut when the tables were written.

The paper's batched code differs in two ways that simplescope does not copy: it reads
``position_source`` in left-padded source batches, where it points to a token that many places
too early for every prompt shorter than the longest of its batch of 512, and it drops the last
partial batch of rows. Generations are decoded as one text (the paper joins token-by-token
decodings with spaces and then removes all spaces, which only differs when a character spans two
tokens).
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

import numpy as np

from ._common import (Run, check_layers, check_positive, default_layers, generate_pairs, model_settings,
                      need_tokenizer, on_gpu, progress_bar)
from ._store import TaskResult, register

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "patchscopes")
GROUPS = ("factual", "commonsense")
#: The columns the task reads (is_correct_baseline only with only_correct=True).
REQUIRED_COLUMNS = ("prompt_source", "position_source", "prompt_target", "position_target", "object", "subject")
#: The paper's two task-specific drops (attribute_extraction.ipynb, run_experiment).
TASK_DROPS = {
    "star_constellation": "service",
    "object_superclass": "Swainson ’ s hawk and the prairie",
}
MAX_NEW_TOKENS = 10


def task_files() -> dict[str, str]:
    """Task name -> bundled file, for the 22 tasks of the paper."""
    out = {}
    for g in GROUPS:
        d = os.path.join(DATA_DIR, g)
        if os.path.isdir(d):
            for f in sorted(os.listdir(d)):
                if f.endswith(".tsv.zst"):
                    out[f[:-len(".tsv.zst")]] = os.path.join(d, f)
    return out


def task_names() -> list[str]:
    return sorted(task_files())


def task_group(name: str) -> str | None:
    f = task_files().get(name)
    return os.path.basename(os.path.dirname(f)) if f else None


def _resolve(task) -> tuple[str, str]:
    """(name, file) of a task name (optionally "factual/NAME") or a path to a .tsv / .tsv.zst."""
    if not isinstance(task, (str, os.PathLike)):
        raise TypeError(f"task must be a task name or a path to a .tsv file, got {type(task).__name__}")
    task = os.fspath(task)
    files = task_files()
    bare = task.split("/", 1)[1] if task.split("/", 1)[0] in GROUPS and task.count("/") == 1 else task
    if bare in files and (bare == task or task_group(bare) == task.split("/", 1)[0]):
        return bare, files[bare]
    if task.endswith((".tsv", ".tsv.zst")) or os.path.sep in task:
        if not os.path.exists(task):
            raise FileNotFoundError(f"task file {task} does not exist")
        base = os.path.basename(task)
        return base[:-len(".tsv.zst")] if base.endswith(".tsv.zst") else base.rsplit(".", 1)[0], task
    raise ValueError(f"unknown task {task!r} (known: {', '.join(sorted(files))}; or a path to a .tsv file)")


def read_table(path: str):
    """A task TSV (optionally zstd-compressed) as strings; its first column is the row id when its
    header is empty (the paper's files), else rows are numbered from 0."""
    import pandas as pd
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise ImportError("reading .tsv.zst task files needs zstandard: pip install 'simplescope[tasks]' "
                              "(or zstandard)") from None
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    try:
        df = pd.read_csv(io.BytesIO(raw), sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    except Exception as e:
        raise ValueError(f"task file {path}: not a readable TSV ({e})") from None
    first = df.columns[0] if len(df.columns) else None
    if first is not None and (first == "" or str(first).startswith("Unnamed: 0")):
        ids = df[first].to_numpy()
        df = df.drop(columns=[first])
        try:
            df.insert(0, "row_id", ids.astype(np.int64))
        except ValueError:
            df.insert(0, "row_id", np.arange(len(df), dtype=np.int64))
    else:
        df.insert(0, "row_id", np.arange(len(df), dtype=np.int64))
    return df


def _ints(df, col: str, name: str) -> np.ndarray:
    out = np.empty(len(df), dtype=np.int64)
    for i, (rid, v) in enumerate(zip(df["row_id"], df[col])):
        try:
            out[i] = int(str(v).strip())
        except ValueError:
            raise ValueError(f"task {name} row {rid}: {col} {v!r} is not an integer") from None
    return out


def _bools(df, col: str, name: str) -> np.ndarray:
    out = np.empty(len(df), dtype=bool)
    for i, (rid, v) in enumerate(zip(df["row_id"], df[col])):
        s = str(v).strip().lower()
        if s not in ("true", "false", "1", "0"):
            raise ValueError(f"task {name} row {rid}: {col} {v!r} is not True or False")
        out[i] = s in ("true", "1")
    return out


@dataclass
class TaskTable:
    """A task table after the paper's filters: ``df`` (columns row_id and the task's columns, with
    integer positions and a boolean is_correct_baseline when present) and what each filter
    dropped."""
    name: str
    path: str
    df: object
    n_file: int
    dropped: dict = field(default_factory=dict)


def load_task(task, only_correct: bool = False) -> TaskTable:
    """Reads a task (a name from ``task_names()`` or a TSV path) and applies the paper's filters
    (module docstring). Missing columns raise ValueError naming them."""
    name, path = _resolve(task)
    df = read_table(path)
    need = list(REQUIRED_COLUMNS) + (["is_correct_baseline"] if only_correct else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"task file {path} lacks the column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)} (has: {', '.join(c for c in df.columns if c != 'row_id')})")
    n_file = len(df)
    df["position_source"] = _ints(df, "position_source", name)
    df["position_target"] = _ints(df, "position_target", name)
    if "is_correct_baseline" in df.columns:
        df["is_correct_baseline"] = _bools(df, "is_correct_baseline", name)
    dropped = {}

    def drop(key, mask):
        nonlocal df
        dropped[key] = int(mask.sum())
        df = df[~mask].reset_index(drop=True)

    if only_correct:
        drop("not_correct_baseline", ~df["is_correct_baseline"].to_numpy())
    drop("empty_source", (df["prompt_source"] == "").to_numpy())
    drop("newline_in_source", df["prompt_source"].str.contains("\n", regex=False).to_numpy())
    if name in TASK_DROPS:
        drop("task_specific", df["prompt_source"].str.contains(TASK_DROPS[name], regex=False).to_numpy())
    return TaskTable(name=name, path=path, df=df, n_file=n_file, dropped=dropped)


def select_rows(table: TaskTable, rows):
    """The rows at the given positions of the filtered table (all when None), with a column
    ``sample`` holding that position."""
    df = table.df.copy()
    df.insert(0, "sample", np.arange(len(df), dtype=np.int64))
    if rows is None:
        return df
    if isinstance(rows, slice):
        return df.iloc[rows].reset_index(drop=True)
    idx = np.atleast_1d(np.asarray(rows))
    if idx.dtype.kind not in "iu" or idx.ndim != 1:
        raise ValueError(f"rows must be a list of row positions (ints) or a slice, got {rows!r}")
    bad = [int(i) for i in idx if not 0 <= i < len(df)]
    if bad:
        raise ValueError(f"rows: position {bad[0]} outside the filtered table of task {table.name} "
                         f"({len(df)} rows: 0 … {len(df) - 1})")
    if len(set(idx.tolist())) != len(idx):
        raise ValueError("rows: a row is listed twice")
    return df.iloc[idx].reset_index(drop=True)


@dataclass
class Prepared:
    """Rows ready to run: tokens, resolved positions, and the rows skipped."""
    df: object
    src_tokens: list
    src_pos: list
    tgt_tokens: list
    tgt_pos: list
    skipped_rows: list


def prepare(model, table: TaskTable, df, max_new_tokens: int) -> Prepared:
    """Tokenizes the rows and checks every position before any work: a position_target outside
    its target, or a negative position_source before the start of its source, raises ValueError
    naming the row; a position_source past the end of its source skips the row."""
    n_ctx = int(model.config.get("n_positions", 2048))
    src = model.to_tokens(list(df["prompt_source"])) if len(df) else []
    uniq = sorted(set(df["prompt_target"]))
    if "" in uniq:
        rid = df["row_id"][df["prompt_target"] == ""].iloc[0]
        raise ValueError(f"task {table.name} row {rid}: prompt_target is empty")
    tok_of = dict(zip(uniq, model.to_tokens(uniq))) if uniq else {}
    keep, src_pos, tgt_pos, skipped = [], [], [], []
    for i, (rid, pt, ps, pp, tp) in enumerate(zip(df["row_id"], df["prompt_target"], df["position_source"],
                                                  df["position_target"], src)):
        t = tok_of[pt]
        if not -len(t) <= pp < len(t):
            raise ValueError(f"task {table.name} row {rid}: position_target {pp} outside the target "
                             f"{pt!r} of {len(t)} tokens")
        if len(t) + max_new_tokens > n_ctx:
            raise ValueError(f"task {table.name} row {rid}: the target's {len(t)} tokens + max_new_tokens "
                             f"{max_new_tokens} exceed the model's context of {n_ctx}")
        if ps >= len(tp):
            skipped.append(int(rid))
            continue
        if ps < -len(tp):
            raise ValueError(f"task {table.name} row {rid}: position_source {ps} outside the source prompt "
                             f"of {len(tp)} tokens")
        if len(tp) > n_ctx:
            raise ValueError(f"task {table.name} row {rid}: the source prompt's {len(tp)} tokens exceed the "
                             f"model's context of {n_ctx}")
        keep.append(i)
        src_pos.append(int(ps) % len(tp))
        tgt_pos.append(int(pp) % len(t))
    kept = df.iloc[keep].reset_index(drop=True)
    return Prepared(df=kept, src_tokens=[src[i] for i in keep], src_pos=src_pos,
                    tgt_tokens=[tok_of[p] for p in kept["prompt_target"]], tgt_pos=tgt_pos, skipped_rows=skipped)


def is_correct(obj: str, generation: str) -> bool:
    """The paper's score: the object, spaces removed, occurs in the generation, spaces removed."""
    return obj.replace(" ", "") in generation.replace(" ", "")


@register("attribute_extraction")
class AttributeResult(TaskResult):
    """``df``: one row per (sample, layer_source, layer_target) with columns sample (position in
    the filtered table), row_id (the file's row), subject, object, is_correct_baseline (when the
    file has it), layer_source, layer_target, generation and is_correct."""

    def summary(self):
        """Accuracy per (layer_source, layer_target), with the number of samples."""
        import pandas as pd
        if not len(self.df):
            return pd.DataFrame(columns=["layer_source", "layer_target", "accuracy", "n"])
        g = self.df.groupby(["layer_source", "layer_target"])["is_correct"]
        return pd.DataFrame({"accuracy": g.mean(), "n": g.size()}).reset_index()

    def accuracy(self, given_correct_baseline: bool | None = None):
        """Accuracy as a source layer x target layer DataFrame; given_correct_baseline=True/False
        keeps only samples whose is_correct_baseline is that (the paper's conditional heatmaps)."""
        df = self.df
        if given_correct_baseline is not None:
            if "is_correct_baseline" not in df.columns:
                raise ValueError("the task file has no is_correct_baseline column")
            df = df[df["is_correct_baseline"] == bool(given_correct_baseline)]
        return df.groupby(["layer_source", "layer_target"])["is_correct"].mean().unstack()

    def plot(self, path=None, ax=None, title=None, given_correct_baseline: bool | None = None):
        """Heatmap of the accuracy, source layer (rows) x target layer (columns)."""
        from .plots import heatmap
        m = self.meta
        cond = "" if given_correct_baseline is None else f", baseline {'correct' if given_correct_baseline else 'wrong'}"
        t = title or (f"attribute extraction: {m.get('task')} ({m.get('n_samples', '?')} samples{cond})")
        return heatmap(self.accuracy(given_correct_baseline), "accuracy", t, path=path, ax=ax, vmin=0.0, vmax=1.0)

    def figures(self):
        return [("accuracy.png", lambda p: self.plot(path=p))]


def attribute_extraction(model, task, rows=None, source_layers=None, target_layers=None,
                         max_new_tokens: int = MAX_NEW_TOKENS, *, only_correct: bool = False, out=None,
                         progress: bool = True, unit_rows: int | None = None) -> AttributeResult:
    """Runs attribute extraction on one task (module docstring) and returns an AttributeResult.

    task: a name from ``ss.tasks.task_names()`` (e.g. "country_capital_city") or a TSV path with
    the same columns. rows: positions in the filtered table (default: all). source_layers,
    target_layers: default 0 … n_layer - 2 each (the paper's grid). out: a folder the run writes
    as it goes (run.json, parts/, summary.csv, accuracy.png); an interrupted run started again with
    the same arguments keeps the finished layer pairs. Everything is checked before any work.
    """
    need_tokenizer(model, "attribute_extraction")
    n_layer = model.n_layers
    S = check_layers(source_layers, n_layer, default_layers(n_layer), "source_layers")
    T = check_layers(target_layers, n_layer, default_layers(n_layer), "target_layers")
    max_new_tokens = check_positive(max_new_tokens, "max_new_tokens", 4096)
    table = load_task(task, only_correct=only_correct)
    sel = select_rows(table, rows)
    prep = prepare(model, table, sel, max_new_tokens)
    with open(table.path, "rb") as f:
        import hashlib
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    settings = {"task": table.name, "task_sha256": digest, "only_correct": bool(only_correct),
                "rows": None if rows is None else [int(r) for r in sel["sample"]],
                "max_new_tokens": max_new_tokens, "model": model_settings(model)}
    meta = {"task": table.name, "task_file": os.path.basename(table.path), "n_file_rows": table.n_file,
            "dropped": table.dropped, "n_filtered": len(table.df), "n_selected": len(sel),
            "n_skipped_position": len(prep.skipped_rows), "skipped_rows": prep.skipped_rows,
            "n_samples": len(prep.df), "source_layers": S, "target_layers": T,
            "max_new_tokens": max_new_tokens, "model": model.path}
    run = Run(out, "attribute_extraction", settings, ("layer_source", "layer_target"))
    pairs = [(ls, lt) for ls in S for lt in T]
    todo = [p for p in pairs if p not in run.done]
    run.start(meta)
    base = prep.df
    cols = {"sample": base["sample"].to_numpy(np.int64), "row_id": base["row_id"].to_numpy(np.int64),
            "subject": list(base["subject"]), "object": list(base["object"])}
    if "is_correct_baseline" in base.columns:
        cols["is_correct_baseline"] = base["is_correct_baseline"].to_numpy(bool)
    objects = list(base["object"])
    n = len(base)

    def on_unit(unit_pairs, gen):
        import pandas as pd
        k = len(unit_pairs)
        frame = {c: (np.tile(v, k) if isinstance(v, np.ndarray) else v * k) for c, v in cols.items()}
        frame["layer_source"] = np.repeat([p[0] for p in unit_pairs], n).astype(np.int64)
        frame["layer_target"] = np.repeat([p[1] for p in unit_pairs], n).astype(np.int64)
        frame["generation"] = list(gen.texts)
        frame["is_correct"] = np.array([is_correct(o, g) for o, g in zip(objects * k, gen.texts)], dtype=bool)
        run.add(pd.DataFrame(frame))

    if n and todo:
        bar = progress_bar(len(pairs), len(pairs) - len(todo), f"attribute extraction {table.name}", progress)
        try:
            generate_pairs(model, todo, prep.src_tokens, prep.src_pos, prep.tgt_tokens, prep.tgt_pos,
                           max_new_tokens=max_new_tokens, unit_rows=unit_rows or (16384 if on_gpu(model) else 2048),
                           on_unit=on_unit, bar=bar)
        finally:
            if bar is not None:
                bar.close()
    return run.finish(AttributeResult, meta)
