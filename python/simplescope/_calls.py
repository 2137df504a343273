"""Calls whose requests and results hold tensors. (Stand-in transport: tensors as msgpack bin
arrays, until the DLPack handles land.)"""
from __future__ import annotations

import numpy as np


def _to_wire(x):
    import torch
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.cpu().contiguous().numpy()
    if isinstance(x, dict):
        return {k: _to_wire(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_wire(v) for v in x]
    return x


def _from_wire(x):
    import torch
    from . import _native
    if isinstance(x, dict):
        if set(x) == {"dtype", "shape", "data"}:
            return torch.from_numpy(_native.array(x).copy())
        return {k: _from_wire(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_from_wire(v) for v in x]
    return x


def call_with_tensors(model, method, req, progress=False):
    req = _to_wire(req)
    bar = None
    on_progress = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=0, unit="row", desc=method, leave=False)

        def on_progress(done, total):
            if total and bar.total != total:
                bar.total = total
                bar.refresh()
            if done > bar.n:
                bar.update(done - bar.n)
    try:
        with model._using() as h:
            out = model._lib.run(h, method, model._with_memory_fraction(req), on_progress)
    finally:
        if bar is not None:
            bar.close()
    return _from_wire(out)
