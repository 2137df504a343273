#!/usr/bin/env python3
"""Brute-force reference for the Patchscope engine (docs/design.md §1), independent of simplescope.

Only HF transformers and torch forward hooks, the obvious slow way: one source forward per prompt,
then one full patched forward per (prompt, layer, method[, target layer]). CPU, float32.

Usage: reference.py IN.json OUT.json

IN.json:
  {"model": "/hf/model/dir",
   "prompts": [[ids...], ...],            # as the model sees them (BOS included if any)
   "layers": [0, 1, ...],                 # source layers l (0-based block index)
   "methods": [
     {"name": "logitlens", "kind": "logitlens"},
     {"name": "x", "kind": "patch", "target": [ids...], "placeholder": k,
      "target_layer": "same" | "last" | <int j> | "all"}],
   "positions": {"<method name>": [[p per layer] per prompt]}}

resid_post of block l = output of transformer.h[l]. Source run: h = resid_post[l][p],
y = argmax logits[p], logp_src = log_softmax(logits[p]).
  logitlens: the source prompt again, h written into the output of the last block at p; read at p.
  patch:     the target prompt, h written into the output of block t at k; read at k, with
             t = l ("same"), L-1 ("last"), j (int), or every j in 0..L-1 ("all", a grid).
Metrics: patched_top1 = argmax patched; prec1 = [patched_top1 == y]; surprisal = -logsm(patched)[y];
paper_surprisal = -logp_src[patched_top1]; source_top1 = y. Natural log, float64.

OUT.json: {"<method>": {"prec1", "surprisal", "paper_surprisal", "source_top1", "patched_top1"}},
each [n_prompts][n_layers], or [n_prompts][n_layers][L] for target_layer "all".

Torch runs single-threaded (REFERENCE_THREADS overrides): the models here are tiny, and on a busy
2-core machine intra-op threads make each forward tens of times slower.
"""
import json
import os
import sys

import torch
from transformers import GPTJForCausalLM
from transformers.utils import logging as hf_logging

METRICS = ("prec1", "surprisal", "paper_surprisal", "source_top1", "patched_top1")


def _block_hidden(out):
    """The hidden-state tensor of a block's output (a tensor, or a tuple whose first item it is)."""
    return out[0] if isinstance(out, tuple) else out


def _replace_hidden(out, pos, vec):
    """A copy of the block output with position pos (batch 0) set to vec."""
    hid = _block_hidden(out).clone()
    hid[0, pos] = vec
    if isinstance(out, tuple):
        return (hid,) + tuple(out[1:])
    return hid


def _logits(model, ids):
    """Full-sequence logits (T, V) of one unbatched prompt."""
    x = torch.tensor([ids], dtype=torch.long)
    return model(input_ids=x, use_cache=False).logits[0]


def source_run(model, ids):
    """Logits (T, V) and every block's output [(T, C)] for one prompt."""
    blocks = model.transformer.h
    captured = [None] * len(blocks)
    handles = []

    def make_hook(i):
        def hook(_module, _inputs, out):
            captured[i] = _block_hidden(out)[0].detach().clone()

        return hook

    try:
        for i, blk in enumerate(blocks):
            handles.append(blk.register_forward_hook(make_hook(i)))
        logits = _logits(model, ids)
    finally:
        for h in handles:
            h.remove()
    for i, c in enumerate(captured):
        if c is None:
            raise RuntimeError(f"block {i} output was not captured")
    return logits, captured


def patched_logits(model, ids, block, pos, vec):
    """Logits (V,) at pos of prompt ids with block `block`'s output at pos replaced by vec."""
    fired = []

    def hook(_module, _inputs, out):
        fired.append(True)
        return _replace_hidden(out, pos, vec)

    handle = model.transformer.h[block].register_forward_hook(hook)
    try:
        logits = _logits(model, ids)
    finally:
        handle.remove()
    if len(fired) != 1:
        raise RuntimeError(f"patch hook on block {block} fired {len(fired)} times, want 1")
    return logits[pos]


def metrics(patched, y, logp_src):
    """Metric dict for patched logits (V,) against source top-1 y and source log-probs."""
    lp = torch.log_softmax(patched.double(), dim=-1)
    top = int(torch.argmax(patched).item())
    return {
        "prec1": 1.0 if top == y else 0.0,
        "surprisal": float(-lp[y].item()),
        "paper_surprisal": float(-logp_src[top].item()),
        "source_top1": y,
        "patched_top1": top,
    }


def _check_ids(ids, vocab, what):
    if not isinstance(ids, list) or not ids:
        raise ValueError(f"{what}: want a non-empty list of token ids")
    for t in ids:
        if not isinstance(t, int) or not 0 <= t < vocab:
            raise ValueError(f"{what}: token id {t!r} outside [0, {vocab})")


def _target_layers(method, layer, n_layer):
    tl = method.get("target_layer", "same")
    if tl == "same":
        return layer
    if tl == "last":
        return n_layer - 1
    if tl == "all":
        return list(range(n_layer))
    if isinstance(tl, int) and not isinstance(tl, bool) and 0 <= tl < n_layer:
        return tl
    raise ValueError(f"method {method.get('name')!r}: bad target_layer {tl!r} (n_layer {n_layer})")


def run(spec):
    torch.set_num_threads(int(os.environ.get("REFERENCE_THREADS", "1")))
    hf_logging.disable_progress_bar()
    model = GPTJForCausalLM.from_pretrained(spec["model"], dtype=torch.float32,
                                            attn_implementation="eager")
    model.eval()
    n_layer = model.config.n_layer
    vocab = model.config.vocab_size
    prompts, layers, methods = spec["prompts"], spec["layers"], spec["methods"]
    positions = spec["positions"]
    for i, ids in enumerate(prompts):
        _check_ids(ids, vocab, f"prompts[{i}]")
    for l in layers:
        if not isinstance(l, int) or not 0 <= l < n_layer:
            raise ValueError(f"layers: {l!r} outside [0, {n_layer})")
    names = [m["name"] for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"methods: duplicate names in {names}")
    for m in methods:
        if m["kind"] not in ("logitlens", "patch"):
            raise ValueError(f"method {m['name']!r}: unknown kind {m['kind']!r}")
        if m["kind"] == "patch":
            _check_ids(m["target"], vocab, f"method {m['name']!r} target")
            k = m["placeholder"]
            if not isinstance(k, int) or not 0 <= k < len(m["target"]):
                raise ValueError(f"method {m['name']!r}: placeholder {k!r} outside target "
                                 f"of length {len(m['target'])}")
            _target_layers(m, 0, n_layer)
        pm = positions.get(m["name"])
        if pm is None or len(pm) != len(prompts):
            raise ValueError(f"positions[{m['name']!r}]: want {len(prompts)} rows")
        for i, row in enumerate(pm):
            if len(row) != len(layers):
                raise ValueError(f"positions[{m['name']!r}][{i}]: want {len(layers)} entries")
            for p in row:
                if not isinstance(p, int) or not 0 <= p < len(prompts[i]):
                    raise ValueError(f"positions[{m['name']!r}][{i}]: {p!r} outside prompt "
                                     f"of length {len(prompts[i])}")

    out = {m["name"]: {k: [] for k in METRICS} for m in methods}
    with torch.no_grad():
        for i, ids in enumerate(prompts):
            src_logits, resid = source_run(model, ids)  # (T, V), L x (T, C)
            for m in methods:
                rows = {k: [] for k in METRICS}
                for li, l in enumerate(layers):
                    p = positions[m["name"]][i][li]
                    h = resid[l][p]  # (C,)
                    y = int(torch.argmax(src_logits[p]).item())
                    logp_src = torch.log_softmax(src_logits[p].double(), dim=-1)
                    if m["kind"] == "logitlens":
                        res = metrics(patched_logits(model, ids, n_layer - 1, p, h), y, logp_src)
                    else:
                        t = _target_layers(m, l, n_layer)
                        k = m["placeholder"]
                        if isinstance(t, list):
                            cells = [metrics(patched_logits(model, m["target"], j, k, h), y, logp_src)
                                     for j in t]
                            res = {key: [c[key] for c in cells] for key in METRICS}
                        else:
                            res = metrics(patched_logits(model, m["target"], t, k, h), y, logp_src)
                    for key in METRICS:
                        rows[key].append(res[key])
                for key in METRICS:
                    out[m["name"]][key].append(rows[key])
    return out


def main(argv):
    if len(argv) != 3:
        print("usage: reference.py IN.json OUT.json", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        spec = json.load(f)
    out = run(spec)
    with open(argv[2], "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
