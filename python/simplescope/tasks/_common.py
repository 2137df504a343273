"""What the tasks share: argument checks, the progress bar, the run driver (resumable output) and
the patch-then-generate loop over layer pairs."""
from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from ._store import RunFolder, sort_rows, write_figures, write_summary


# ---------------------------------------------------------------------- arguments

def default_layers(n_layer: int) -> list[int]:
    """Layers 0 … n_layer - 2: the paper's grids leave out the last layer (its output is read
    through the final layer norm, so patching it is a different operation)."""
    return list(range(max(1, n_layer - 1)))


def check_layers(value, n_layer: int, default: Sequence[int], what: str) -> list[int]:
    """The layers asked for (an int or a list of ints, each in [0, n_layer)), or ``default``."""
    if value is None:
        return list(default)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [value]
    try:
        vals = list(value)
    except TypeError:
        raise ValueError(f"{what} must be an int or a list of ints, got {value!r}") from None
    if not vals:
        raise ValueError(f"{what}: no layer given (empty list)")
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{what}: {v!r} is not a layer index")
        if not 0 <= int(v) < n_layer:
            raise ValueError(f"{what}: layer {int(v)} out of range [0, {n_layer}) (the model has {n_layer} layers)")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: a layer is listed twice in {out}")
    return out


def check_positive(value, what: str, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 or (upper and value > upper):
        rng = f"[1, {upper}]" if upper else ">= 1"
        raise ValueError(f"{what} must be an int {rng}, got {value!r}")
    return int(value)


def need_tokenizer(model, what: str) -> None:
    if not model.config.get("has_tokenizer", True):
        raise ValueError(f"{what}: the model folder {model.path} has no tokenizer.json (texts cannot be tokenized)")


def model_settings(model) -> dict:
    """What identifies a model in a run's settings (a resumed run must use the same)."""
    c = model.config
    return {"path": os.path.realpath(model.path), "n_layer": int(c["n_layer"]), "n_embd": int(c["n_embd"]),
            "vocab_size": int(c["vocab_size"]), "dtype": str(c.get("dtype"))}


def on_gpu(model) -> bool:
    return str(model.config.get("device", "cpu")).startswith("cuda")


# ---------------------------------------------------------------------- progress

def progress_bar(total: int, initial: int, desc: str, enabled: bool, unit: str = "pair"):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit=unit)


# ---------------------------------------------------------------------- the run driver

class Run:
    """Collects a task's per-example frames; with ``out``, writes each as a part as soon as it is
    finished and reads back the parts of an earlier run with the same settings (resume)."""

    def __init__(self, out, kind: str, settings: dict, pair_columns: Sequence[str]):
        import pandas as pd
        self.pd = pd
        self.folder = RunFolder(out, kind, settings) if out else None
        self.settings = settings
        self.pair_columns = list(pair_columns)
        self.frames = self.folder.frames() if self.folder else []
        self.done: set[tuple] = set()
        for f in self.frames:
            if len(f):
                for k in f[self.pair_columns].drop_duplicates().itertuples(index=False, name=None):
                    self.done.add(tuple(int(v) for v in k))

    def start(self, meta: dict) -> None:
        if self.folder:
            self.folder.write_meta(meta, status="running")

    def add(self, frame) -> None:
        self.frames.append(frame)
        if self.folder:
            self.folder.write_part(frame)

    def finish(self, result_cls, meta: dict):
        frames = [f for f in self.frames if len(f)]
        df = self.pd.concat(frames, ignore_index=True) if frames else self.pd.DataFrame()
        df = sort_rows(df, self.pair_columns)
        res = result_cls(df, dict(meta, settings=self.settings))
        if self.folder:
            self.folder.write_meta(res.meta, status="complete")
            write_summary(res, self.folder.path)
            write_figures(res, self.folder.path)
        return res


# ---------------------------------------------------------------------- patch, then generate

def generate_pairs(model, pairs: Sequence[tuple[int, int]], src_tokens, src_pos, tgt_tokens, tgt_pos, *,
                   max_new_tokens: int, stop=None, unit_rows: int,
                   on_unit: Callable[[list, object], None], bar=None) -> None:
    """For every (source layer, target layer) in ``pairs``: the hidden state of each sample's
    source prompt (block output at the source layer, position src_pos[i]) is written into its
    target (output of the target layer, position tgt_pos[i]) and the continuation generated
    greedily. Each source layer's hidden states are read once (one source pass per prompt); whole
    pairs, up to ``unit_rows`` rows (samples x pairs) or one pair, go to the core in one call, and
    ``on_unit(pairs_of_unit, GenerateOutput)`` gets each call's rows in pair-major, then sample
    order."""
    import torch
    n = len(src_tokens)
    per = max(1, unit_rows // max(1, n))
    pairs = list(pairs)
    last_use = {ls: i for i, (ls, _) in enumerate(pairs)}
    shared = all(t == tgt_tokens[0] for t in tgt_tokens)
    states: dict[int, object] = {}
    for lo in range(0, len(pairs), per):
        unit = pairs[lo:lo + per]
        for ls, _ in unit:
            if ls not in states:
                states[ls] = model.hidden_states(src_tokens, ls, list(src_pos))
        vecs = torch.cat([states[ls] for ls, _ in unit]) if len(unit) > 1 else states[unit[0][0]]
        k = len(unit)
        out = model.generate(tgt_tokens[0] if shared else list(tgt_tokens) * k, vecs,
                             [lt for _, lt in unit for _ in range(n)], list(tgt_pos) * k,
                             max_new_tokens=max_new_tokens, stop=stop, progress=False)
        for ls in {ls for ls, _ in unit}:
            if last_use[ls] < lo + per:
                del states[ls]  # no later unit reads this source layer
        on_unit(unit, out)
        if bar is not None:
            bar.update(k)
