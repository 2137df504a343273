"""Patching and generation primitives: Model.hidden_states, Model.patch and Model.generate.

A patch writes a vector into the residual stream of a target prompt: with site="resid_post"
(default) it replaces the output of block `layer` (TransformerLens `blocks.{layer}.hook_resid_post`,
HF `transformer.h[layer]`'s output, before the final layer norm for the last block); with
site="resid_pre" it replaces the input of block `layer` (layer 0: the embedding output). Positions
count tokens as the model sees them (with prepend_bos, position 0 is the BOS); negative positions
count from the end of each target. The work runs in the Go core (docs/design.md §2); this module
only normalises arguments into one request per call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

SITES = ("resid_post", "resid_pre")
MAX_NEW_TOKENS = 4096


@dataclass(frozen=True)
class Source:
    """Hidden states taken inside the core: the residual of each source prompt at `layer`
    (block output, as `Model.hidden_states` reads it) and `position`. prompts: a text, a list
    of texts or token id lists; layer, position: an int or one per prompt."""
    prompts: Any
    layer: Any
    position: Any = -1


@dataclass
class PatchOutput:
    """logits: torch [n, vocab] float32, the next-token logits at the last position of each
    target row after the patch."""
    logits: Any
    _model: Any = None

    def top_k(self, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per row, the k most probable next tokens as (token string, probability)."""
        import torch
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        probs = torch.softmax(self.logits.float(), dim=-1)
        p, ids = probs.topk(min(int(k), probs.shape[-1]), dim=-1)
        flat = sorted(set(ids.reshape(-1).tolist()))
        names = dict(zip(flat, self._model.to_str_tokens(flat)))
        return [[(names[i], float(q)) for i, q in zip(r_ids, r_p)]
                for r_ids, r_p in zip(ids.tolist(), p.tolist())]


@dataclass
class GenerateOutput:
    """tokens: the new tokens per row (prompt excluded; generation stops at EOS, which is left
    out, or after the token that completes a stop string, which is kept); texts: those tokens
    decoded."""
    tokens: list
    texts: list


def _is_token_list(x) -> bool:
    return isinstance(x, (list, tuple, np.ndarray)) and len(x) > 0 and all(
        isinstance(t, (int, np.integer)) for t in x)


def prompt_fields(prompts, what: str) -> dict:
    """{"texts": [...]} or {"tokens": [[...]]} for a text, a token list, or a list of either."""
    if isinstance(prompts, str) or _is_token_list(prompts):
        prompts = [prompts]
    try:
        import torch
        if isinstance(prompts, torch.Tensor):
            prompts = prompts.detach().cpu().numpy()
    except ImportError:
        pass
    if isinstance(prompts, np.ndarray) and prompts.ndim == 2:
        prompts = list(prompts)
    prompts = list(prompts)
    if not prompts:
        raise ValueError(f"{what}: no prompts given (empty list)")
    if all(isinstance(p, str) for p in prompts):
        return {"texts": prompts}
    if all(_is_token_list(p) for p in prompts):
        return {"tokens": [[int(t) for t in p] for p in prompts]}
    bad = next(i for i, p in enumerate(prompts) if not (isinstance(p, str) or _is_token_list(p)))
    raise TypeError(f"{what}: row {bad} is {type(prompts[bad]).__name__} "
                    "(want texts, or non-empty token id lists, not a mix)")


def _ints(x, what: str) -> list[int]:
    arr = np.atleast_1d(np.asarray(x))
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must be an int or a list of ints, got {x!r}")
    return [int(v) for v in arr]


def per_row(x, n: int, what: str) -> list[int]:
    """An int for every row, or one int per row."""
    v = _ints(x, what)
    if len(v) == 1:
        return v * n
    if len(v) != n:
        raise ValueError(f"{what} has {len(v)} entries for {n} rows")
    return v


def positions_per_row(position, n: int) -> list[list[int]]:
    """position: an int, n ints, or for each row a list of positions."""
    if isinstance(position, (int, np.integer)):
        return [[int(position)]] * n
    rows = list(position)
    if any(isinstance(r, (list, tuple, np.ndarray)) for r in rows):
        if len(rows) != n:
            raise ValueError(f"position has {len(rows)} rows for {n} rows")
        out = []
        for i, r in enumerate(rows):
            r = _ints(r, f"position row {i}")
            if not r:
                raise ValueError(f"position row {i} is empty")
            out.append(r)
        return out
    return [[p] for p in per_row(rows, n, "position")]


def _rows_of(x) -> int | None:
    if x is None:
        return None
    if isinstance(x, Source):
        f = prompt_fields(x.prompts, "Source.prompts")
        return len(f.get("texts") or f.get("tokens"))
    shape = tuple(getattr(x, "shape", np.shape(x)))
    return shape[0] if len(shape) == 2 else None


def row_count(targets: dict, vectors, layer, position) -> int:
    """n: the largest of the targets' count, the vectors' rows and the per-row arguments."""
    counts = {"targets": len(targets.get("texts") or targets.get("tokens"))}
    if (r := _rows_of(vectors)) is not None:
        counts["vectors"] = r
    for name, v in (("layer", layer), ("position", position)):
        if v is not None and not isinstance(v, (int, np.integer)):
            counts[name] = len(list(v))
    n = max(counts.values())
    wrong = {k: c for k, c in counts.items() if c not in (1, n)}
    if wrong:
        raise ValueError(f"row counts disagree: {counts} (each must be 1 or the same n)")
    return n


def check_site(site: str):
    if site not in SITES:
        raise ValueError(f"site {site!r} (want one of {', '.join(SITES)})")


def transform_fields(transform) -> tuple[dict, Callable | None]:
    """An affine (W [d_in, d_model], b [d_model]) goes to the core; a callable stays here."""
    if transform is None:
        return {}, None
    if callable(transform):
        return {}, transform
    if isinstance(transform, (tuple, list)) and len(transform) == 2:
        W, b = transform
        return {"transform": {"W": W, "b": b}}, None
    raise TypeError("transform must be None, (W, b) or a callable taking [n, d_in] and returning [n, d_model]")


def _request(model, targets, vectors, layer, position, site, transform, prepend_bos) -> tuple[dict, int]:
    """The fields patch and generate share: targets, rows' layers and positions, the vectors (or
    a Source the core reads), the site and an affine transform."""
    check_site(site)
    tfields = prompt_fields(targets, "targets")
    n = row_count(tfields, vectors, layer, position)
    req = {"targets": tfields, "prepend_bos": bool(prepend_bos), "site": site}
    if vectors is None:
        if transform is not None:
            raise ValueError("transform given without vectors")
        return req, n
    if layer is None:
        raise ValueError("layer is required when vectors are given")
    req["layers"] = per_row(layer, n, "layer")
    req["positions"] = positions_per_row(position, n)
    affine, fn = transform_fields(transform)
    if isinstance(vectors, Source):
        if fn is not None:  # the callable runs here, on the hidden states the core reads
            vectors = hidden_states(model, vectors.prompts, vectors.layer, vectors.position,
                                    prepend_bos=prepend_bos)
        else:
            src = prompt_fields(vectors.prompts, "Source.prompts")
            m = len(src.get("texts") or src.get("tokens"))
            req["source"] = dict(src, layers=per_row(vectors.layer, m, "Source.layer"),
                                 positions=per_row(vectors.position, m, "Source.position"))
    if not isinstance(vectors, Source):
        if fn is not None:
            vectors = _apply_callable(fn, vectors, n)
        req["vectors"] = vectors
    req.update(affine)
    return req, n


def _apply_callable(fn, vectors, n):
    import torch
    v = vectors if isinstance(vectors, torch.Tensor) else torch.as_tensor(np.asarray(vectors))
    if v.ndim == 1:
        v = v.unsqueeze(0).expand(n, -1)
    out = fn(v)
    if not isinstance(out, (torch.Tensor, np.ndarray)):
        raise TypeError(f"transform returned {type(out).__name__}, want a tensor [n, d_model]")
    return out


def hidden_states(model, prompts, layer, position=-1, *, prepend_bos: bool = False):
    """torch [n, d_model] on the model's device (the model's dtype): the output of block `layer`
    (resid_post; before the final layer norm for the last block) of each prompt at `position`."""
    fields = prompt_fields(prompts, "prompts")
    n = len(fields.get("texts") or fields.get("tokens"))
    req = dict(fields, prepend_bos=bool(prepend_bos), layers=per_row(layer, n, "layer"),
               positions=per_row(position, n, "position"))
    return model._call_tensors("hidden_states", req)["vectors"]


def patch(model, targets, vectors, layer, position=-1, *, site="resid_post", transform=None,
          prepend_bos=False, progress=True, deterministic=False) -> PatchOutput:
    """Patches each row's vector into its target and returns the next-token logits at the last
    position of each target (PatchOutput.logits: torch [n, vocab] float32). deterministic: fixed
    default batch sizes, not sizes from the GPU's free memory (bit-equal results across runs)."""
    if vectors is None:
        raise ValueError("patch needs vectors (a tensor, an array or ss.Source)")
    req, _ = _request(model, targets, vectors, layer, position, site, transform, prepend_bos)
    req["deterministic"] = bool(deterministic)
    out = model._call_tensors("patch", req, progress=progress)
    return PatchOutput(logits=out["logits"], _model=model)


def generate(model, targets, vectors=None, layer=None, position=-1, *, max_new_tokens=20,
             do_sample=False, temperature=1.0, top_k=None, top_p=None, seed=None, stop=None,
             site="resid_post", transform=None, prepend_bos=False, progress=True,
             deterministic=False) -> GenerateOutput:
    """Generates up to max_new_tokens after each target, with the patch (if any) applied in the
    prompt pass only: every new token attends to the patched keys and values through the cache.
    Greedy unless do_sample; sampling repeats exactly for the same seed."""
    if not isinstance(max_new_tokens, (int, np.integer)) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be an int in [1, {MAX_NEW_TOKENS}], got {max_new_tokens!r}")
    req, _ = _request(model, targets, vectors, layer, position, site, transform, prepend_bos)
    req.update(max_new_tokens=int(max_new_tokens), do_sample=bool(do_sample),
               temperature=float(temperature), top_k=int(top_k or 0), top_p=float(top_p or 1.0),
               seed=int(seed) if seed is not None else 0, stop=_stops(stop),
               deterministic=bool(deterministic))
    out = model._call_tensors("generate", req, progress=progress)
    return GenerateOutput(tokens=[list(t) for t in out["tokens"]], texts=list(out["texts"]))


def _stops(stop) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    for s in stops:
        if not isinstance(s, str) or not s:
            raise ValueError(f"stop strings must be non-empty strings, got {s!r}")
    return stops
