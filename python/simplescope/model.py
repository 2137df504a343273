"""The notebook API: ss.load(...) -> Model."""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterable, Sequence

import numpy as np

import torch

from . import _native, _tensors, patching
from .methods import DEFAULT_METHODS, method_specs
from .results import Results


class Model:
    """A GPT-J loaded by the Go core. Methods are safe to call from several threads."""

    def __init__(self, path: str, device="cpu", dtype: str = "float32"):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"model path must be a string or path, got {type(path).__name__}")
        path = os.path.expanduser(os.fspath(path))
        devices = _devices(device)
        lib = _native.lib()
        _init_cuda(devices)
        self._adopt(lib, lib.load(path, ",".join(devices), dtype), path)

    def _adopt(self, lib, h, path):
        """Takes ownership of a native model handle (ss_model_load, ss_model_from_tensors)."""
        self._lib = lib
        self._h = h
        self._lock = threading.Condition()
        self._active = 0  # calls in flight; close() waits for them
        self.path = path
        self.config = self._lib.call(self._h, "config")
        dev = str(self.config.get("device", "cpu"))
        self._cuda_index = _cuda_index(dev) if dev.startswith("cuda") else None

    # lifecycle -----------------------------------------------------------------------------
    def close(self):
        """Frees the model's memory now (otherwise when the object is collected). Calls still
        running in other threads finish first; later calls raise "the model is closed"."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            h, self._h = getattr(self, "_h", None), None
            lock.wait_for(lambda: self._active == 0)
        if h:
            self._lib.free(h)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        c = self.config
        return (f"simplescope.Model({self.path!r}, n_layer={c['n_layer']}, n_embd={c['n_embd']}, "
                f"device={c['device']!r}, dtype={c['dtype']!r})")

    def _handle(self):
        if not self._h:
            raise RuntimeError("the model is closed")
        return self._h

    @contextlib.contextmanager
    def _using(self):
        """Holds the native handle for one call: close() waits until the call is over."""
        with self._lock:
            if not self._h:
                raise RuntimeError("the model is closed")
            self._active += 1
            h = self._h
        try:
            yield h
        finally:
            with self._lock:
                self._active -= 1
                self._lock.notify_all()

    def _call(self, method, req=None):
        with self._using() as h:
            return self._lib.call(h, method, self._with_memory_fraction(req))

    def _with_memory_fraction(self, req):
        """req with torch's per-process memory fraction of the model's CUDA device, which the
        core's batch budgets use when its shim cannot read the allocator's own."""
        if self._cuda_index is None:
            return req
        import torch
        get = getattr(torch.cuda, "get_per_process_memory_fraction", None)  # torch >= 2.8
        if get is None:
            return req
        req = dict(req or {})
        req.setdefault("memory_fraction", float(get(self._cuda_index)))
        return req

    @property
    def n_layers(self) -> int:
        return int(self.config["n_layer"])

    # tokens --------------------------------------------------------------------------------
    # The public names are TransformerLens's (to_tokens, to_string, to_str_tokens); simplescope's
    # own names tokenize and decode are aliases of the same functions.  Unlike TransformerLens,
    # to_tokens returns lists and adds BOS only when asked (prepend_bos=False by default).
    def to_tokens(self, text: str | Sequence[str], prepend_bos: bool = False):
        """Token ids of a text (list[int]) or of each text in a list (list[list[int]]).

        TransformerLens's name; ``tokenize`` is an alias.  BOS is prepended only with
        ``prepend_bos=True`` and the result is a list, not a tensor."""
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is {type(t).__name__}, not str")
        ids = self._call("tokenize", {"texts": texts, "prepend_bos": bool(prepend_bos)})["ids"]
        return ids[0] if single else ids

    def to_string(self, ids) -> str:
        """The text of a token id sequence (any array-like; it is flattened).

        TransformerLens's name; ``decode`` is an alias."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._call("decode", {"ids": [ids]})["texts"][0]

    def to_str_tokens(self, ids) -> list[str]:
        """The display string of each token id (TransformerLens's name; it takes ids here)."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._call("token_strings", {"ids": ids})["tokens"]

    #: simplescope's name for :meth:`to_tokens` (the same function).
    tokenize = to_tokens
    #: simplescope's name for :meth:`to_string` (the same function).
    decode = to_string

    def _as_token_lists(self, tokens) -> list[list[int]]:
        if isinstance(tokens, str):
            raise TypeError("run_with_cache takes token ids; use model.tokenize(text) first")
        try:
            import torch
            if isinstance(tokens, torch.Tensor):
                tokens = tokens.detach().cpu().numpy()
        except ImportError:
            pass
        if isinstance(tokens, np.ndarray):
            if tokens.ndim == 1:
                return [tokens.astype(np.int64).tolist()]
            if tokens.ndim == 2:
                return tokens.astype(np.int64).tolist()
            raise ValueError(f"tokens must be 1-D or 2-D, got shape {tokens.shape}")
        tokens = list(tokens)
        if tokens and all(isinstance(t, (int, np.integer)) for t in tokens):
            return [[int(t) for t in tokens]]
        return [[int(t) for t in seq] for seq in tokens]

    # forward -------------------------------------------------------------------------------
    def run_with_cache(self, tokens, names_filter=None, return_type: str = "torch", *, names=None):
        """Runs the model and returns (logits, cache) like TransformerLens.

        tokens: a list of ids, a list of lists (ragged: right-padded internally), or an integer
        [batch, pos] / [pos] tensor or array (any device; passed without a copy). names_filter:
        None (every site), a site name, a list of names, or a function name -> bool (`names` is
        an alias). Returns logits [batch, pos, vocab] float32 and cache[name] [batch, pos,
        d_model] in the model's dtype, for "hook_embed" and "blocks.{l}.hook_resid_post", as
        torch tensors on the model's device that share the core's memory (no copy; they stay
        valid after close()). Positions past a sequence's length are padding. return_type
        "numpy" gives numpy arrays (bfloat16 as float32).
        """
        if return_type not in ("torch", "numpy"):
            raise ValueError(f"return_type {return_type!r} (want 'torch' or 'numpy')")
        if names is not None:
            if names_filter is not None:
                raise TypeError("give names_filter or its alias names, not both")
            names_filter = names
        req = {}
        sites = self._cache_sites(names_filter)
        if sites is not None:
            req["names"] = sites
        with _tensors.TensorArgs() as args:
            if _tensors.is_tensor(tokens):
                req["tokens"] = args.arg(tokens, "tokens")
            else:
                req["tokens"] = self._as_token_lists(tokens)
            out = self._call("run_with_cache", req)
        out = _tensors.decode_tensors(out)
        logits, cache = out["logits"], dict(out["cache"])
        if return_type == "numpy":
            logits = _numpy(logits)
            cache = {k: _numpy(v) for k, v in cache.items()}
        return logits, Cache(cache)

    def _cache_sites(self, names_filter):
        """The site names a names_filter selects (None = all, without listing them)."""
        if names_filter is None:
            return None
        if isinstance(names_filter, str):
            return [names_filter]
        if callable(names_filter):
            every = ["hook_embed"] + [f"blocks.{l}.hook_resid_post" for l in range(self.n_layers)]
            return [n for n in every if names_filter(n)]
        return [str(n) for n in names_filter]

    # evaluation ----------------------------------------------------------------------------
    def evaluate(self, prompts, methods=DEFAULT_METHODS, positions=None, seed=None,
                 prepend_bos=None, layers=None, progress: bool = True, truncate: bool = True,
                 batch_tokens: int = 0, patch_rows: int = 0, chunk_prompts: int = 0, *,
                 preset: str | None = None, tf32: bool | None = None, deterministic: bool = False) -> Results:
        """Evaluates each method at each layer on each prompt (docs/design.md §1).

        prompts: list of texts, or list of token-id lists (BOS is added when prepend_bos). An
          empty prompt is skipped (NaN rows, listed in ``res.meta["skipped"]``); with BOS an
          empty text is the BOS token alone and is evaluated.
        methods: built-in names ("logitlens", "patchscope", "simplescope") and/or dicts
          {"name", "target": text, "placeholder": text (default "?") or token index,
           "target_layer": "same" | "last" | "all" | int}.
        positions (len counts BOS when present):
          "random"   randint(0, len-1) per prompt, layer and method, keyed by (seed, method name,
                     layer, the prompt's tokens): independent of which other prompts, methods or
                     layers are evaluated;
          "notebook" the published simplescope notebook's draws: random.seed(seed), then
                     random.randint(0, len-1) for each method, each layer, each prompt;
          "paper"    the Patchscopes paper's: random.seed(seed), one randint(start, len-2) per
                     prompt for every layer and method (start 1 with BOS); shorter prompts skipped;
          "last", or an int array [n_prompts] or [n_prompts, n_layers].
        seed: any integer in int64. prepend_bos: put <|endoftext|> first.
        preset: the preset the prompts were read with ("seed" or "paper", see read_corpus):
          recorded, and its positions, seed and prepend_bos apply where those are None (without
          a preset: "random", 42 and True).
        tf32: on CUDA, allow (True) or forbid (False) TF32 matmuls during the call and restore
          torch's setting afterwards (None: leave it); faster on Ampere and later GPUs at about
          1e-3 relative precision in float32 matmuls; no effect on CPU or in float16/bfloat16.
        layers: source layers (default all). truncate: cut prompts longer than the model's
          context to it (False: raise). progress: a tqdm bar. Ctrl-C stops the run promptly and
          leaves the model usable.
        deterministic: fixed default batch sizes instead of sizes that follow the GPU's free
          memory, so the results are bit-for-bit the same across runs on one device and dtype
          (whatever else the GPU holds).

        ``res.meta`` records the provenance: versions (simplescope, torch, CUDA), device and its
        name, dtype, the TF32 flags in effect, seed, positions, preset, ``corpus_sha256`` (of the
        prompts' token ids as evaluated) and the batch sizes used (``meta["stats"]``).
        """
        req = _evaluate_request(prompts, methods, positions, seed, prepend_bos, layers, truncate,
                                batch_tokens, patch_rows, chunk_prompts, preset, tf32)
        req["deterministic"] = bool(deterministic)
        out = self._run("evaluate", req, progress)
        return _results_from(out, self)

    def _run(self, method: str, req: dict, progress: bool) -> dict:
        """A long native call (cancellable with Ctrl-C), with a progress bar when asked."""
        bar, on_progress = _progress_bar() if progress else (None, None)
        try:
            with self._using() as h:
                return self._lib.run(h, method, self._with_memory_fraction(req), on_progress)
        finally:
            if bar is not None:
                bar.close()

    def inspect(self, prompt, k: int = 5, methods=DEFAULT_METHODS, position: int | None = None,
                prepend_bos: bool = True, layers=None):
        """The top-k decoded tokens per layer per method for one prompt, as a DataFrame with
        columns layer, method, rank, token_id, token, prob (plus the model's own prediction as
        method "source" at layer = n_layer)."""
        import pandas as pd
        out = self._call("inspect", _inspect_request(prompt, k, methods, position, prepend_bos, layers))
        names = self._token_names(_inspect_ids(out))
        df = pd.DataFrame(_inspect_rows(out, names, self.n_layers),
                          columns=["layer", "method", "rank", "token_id", "token", "prob"])
        df.attrs["position"] = out["position"]
        return df

    def _token_names(self, ids: list[int]) -> dict[int, str]:
        """Each id's display string (its number when the model has no tokenizer)."""
        if self.config.get("has_tokenizer"):
            return dict(zip(ids, self.to_str_tokens(ids)))
        return {i: str(i) for i in ids}

    # patching and generation (python/simplescope/patching.py) ------------------------------
    def hidden_states(self, prompts, layer, position=-1, *, prepend_bos: bool = False):
        """torch [n, d_model]: the output of block `layer` (resid_post; before ln_f for the last
        block) of each prompt at `position` (negative counts from the end)."""
        return patching.hidden_states(self, prompts, layer, position, prepend_bos=prepend_bos)

    def patch(self, targets, vectors, layer, position=-1, *, site="resid_post", transform=None,
              prepend_bos=False, progress=True, deterministic=False) -> "patching.PatchOutput":
        """Writes vectors into the targets' residual stream and returns the next-token logits
        at each target's last position (see simplescope.patching)."""
        return patching.patch(self, targets, vectors, layer, position, site=site, transform=transform,
                              prepend_bos=prepend_bos, progress=progress, deterministic=deterministic)

    def generate(self, targets, vectors=None, layer=None, position=-1, *, max_new_tokens=20,
                 do_sample=False, temperature=1.0, top_k=None, top_p=None, seed=None, stop=None,
                 site="resid_post", transform=None, prepend_bos=False, progress=True,
                 deterministic=False) -> "patching.GenerateOutput":
        """Generates after each target, the patch (if any) applied in the prompt pass only
        (see simplescope.patching)."""
        return patching.generate(self, targets, vectors, layer, position, max_new_tokens=max_new_tokens,
                                 do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                                 seed=seed, stop=stop, site=site, transform=transform,
                                 prepend_bos=prepend_bos, progress=progress, deterministic=deterministic)

    def _call_tensors(self, method, req, progress=False):
        """Runs a method whose request may hold torch tensors or numpy arrays (imported as handles
        without a copy, released after the call) and whose result holds tensors (docs/tensors.md)."""
        with _tensors.TensorArgs() as args:
            out = self._run(method, _tensor_handles(req, args, ""), progress)
        return _tensors.decode_tensors(out)

    def live_tensors(self) -> int:
        """Tensors alive in the process (a leak check)."""
        return self._lib.live_tensors()


class Cache(dict):
    """Activations keyed by TransformerLens names (blocks.{l}.hook_resid_post, hook_embed)."""

    def __getitem__(self, key):
        try:
            return super().__getitem__(key)
        except KeyError:
            raise KeyError(f"{key!r} not in cache; known: {', '.join(sorted(self))}") from None


# ------------------------------------------------------------------------------ requests

#: The position modes evaluate names (an array of positions is the other choice).
POSITION_MODES = ("random", "notebook", "paper", "last")
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def _evaluate_request(prompts, methods, positions, seed, prepend_bos, layers, truncate,
                      batch_tokens, patch_rows, chunk_prompts, preset=None, tf32=None) -> dict:
    """The engine's evaluate request from evaluate's arguments (checked before anything runs).
    positions, seed and prepend_bos left as None are the preset's (the core fills them in) or,
    without a preset, "random", 42 and True."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of texts or token lists, not a single string")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts given (empty list)")
    if preset is not None and not isinstance(preset, str):
        raise TypeError(f"preset must be a name such as 'seed' or 'paper', or None; got {type(preset).__name__}")
    if tf32 is not None and not isinstance(tf32, (bool, np.bool_)):
        raise TypeError(f"tf32 must be True, False or None, got {type(tf32).__name__}")
    req = {"methods": None, "truncate": bool(truncate), "batch_tokens": int(batch_tokens),
           "patch_rows": int(patch_rows), "chunk_prompts": int(chunk_prompts)}
    if seed is not None or not preset:
        req["seed"] = _seed_field(42 if seed is None else seed)
    if positions is not None or not preset:
        req["positions"] = _positions_field("random" if positions is None else positions)
    if prepend_bos is not None or not preset:
        req["prepend_bos"] = bool(True if prepend_bos is None else prepend_bos)
    if preset:
        req["preset"] = preset
    if tf32 is not None:
        req["tf32"] = bool(tf32)
    specs = method_specs(methods)
    if not specs:
        raise ValueError("no methods given")
    req["methods"] = specs
    req.update(_prompts_field(prompts))
    if layers is not None:
        req["layers"] = [int(l) for l in np.atleast_1d(np.asarray(layers))]
    return req


def _seed_field(seed) -> int:
    """The seed as an int64 (ValueError naming the argument otherwise)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    seed = int(seed)
    if not INT64_MIN <= seed <= INT64_MAX:
        raise ValueError(f"seed {seed} is outside the int64 range [-2**63, 2**63 - 1]")
    return seed


def _prompts_field(prompts: list) -> dict:
    """{"texts": [...]} or {"tokens": [[...], ...]}; a mix of the two is refused."""
    if all(isinstance(p, str) for p in prompts):
        return {"texts": prompts}
    if all(not isinstance(p, str) for p in prompts):
        return {"tokens": [[int(t) for t in np.asarray(p).reshape(-1)] for p in prompts]}
    raise TypeError("prompts mix texts and token lists")


def _positions_field(positions):
    """The positions field: a mode name (POSITION_MODES), or an int64 array (whole floats accepted)."""
    if isinstance(positions, str):
        if positions not in POSITION_MODES:
            raise ValueError(f"positions {positions!r}: unknown mode (known: {', '.join(POSITION_MODES)}, "
                             "or an array of positions)")
        return positions
    arr = np.asarray(positions)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"positions must be a mode name or integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _progress_bar():
    """A tqdm bar and the progress callback that moves it."""
    from tqdm.auto import tqdm

    bar = tqdm(total=0, unit="item", desc="simplescope", leave=False)

    def on_progress(done, total):
        if total and bar.total != total:
            bar.total = total
            bar.refresh()
        if done > bar.n:
            bar.update(done - bar.n)

    return bar, on_progress


def _inspect_request(prompt, k, methods, position, prepend_bos, layers) -> dict:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    req = {"methods": method_specs(methods), "k": int(k), "prepend_bos": bool(prepend_bos)}
    if isinstance(prompt, str):
        req["text"] = prompt
    else:
        req["tokens"] = [int(t) for t in prompt]
    if position is not None:
        req["position"] = int(position)
    if layers is not None:
        req["layers"] = [int(l) for l in layers]
    return req


def _inspect_ids(out: dict) -> list[int]:
    """Every token id an inspect answer names, sorted."""
    ids = set(out["source"]["ids"])
    for per in out["methods"].values():
        for t in per:
            ids.update(t["ids"])
    return sorted(ids)


def _inspect_rows(out: dict, names: dict, n_layers: int) -> list[tuple]:
    """(layer, method, rank, token_id, token, prob) rows: each method's top-k per layer, then the
    model's own prediction as method "source" at layer n_layers."""
    rows = []
    for mname, per in out["methods"].items():
        for layer, t in zip(out["layers"], per):
            for rank, (i, lp) in enumerate(zip(t["ids"], t["logprobs"])):
                rows.append((layer, mname, rank, i, names[i], float(np.exp(lp))))
    for rank, (i, lp) in enumerate(zip(out["source"]["ids"], out["source"]["logprobs"])):
        rows.append((n_layers, "source", rank, i, names[i], float(np.exp(lp))))
    return rows


def _alias_keyword(name: str, value, alias: str, alias_value):
    """The value of a keyword given under its name or its alias (not both)."""
    if alias_value is None:
        return value
    if value is not None:
        raise TypeError(f"give {name} or its alias {alias}, not both")
    return alias_value


def _tensor_handles(obj, args, name: str):
    """obj with every tensor or array in it replaced by a handle (named by its path for errors)."""
    if _tensors.is_tensor(obj):
        return args.arg(obj, name)
    if isinstance(obj, dict):
        return {k: _tensor_handles(v, args, f"{name}.{k}" if name else k) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and any(_tensors.is_tensor(v) for v in obj):
        return [_tensor_handles(v, args, f"{name}[{i}]") for i, v in enumerate(obj)]
    return obj


def _numpy(t):
    """A result tensor as a numpy array (no copy for CPU tensors numpy has a dtype for)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.cpu().numpy()


def _results_from(out: dict, model: Model | None) -> Results:
    methods, data, target_layers, defs = [], {}, {}, {}
    for m in out["methods"]:
        name = m["name"]
        methods.append(name)
        data[name] = {k: _native.array(v) for k, v in m["arrays"].items()}
        target_layers[name] = m.get("target_layers")
        defs[name] = {k: v for k, v in m.items() if k not in ("arrays", "target_layers")}
    meta = {
        "model": model.path if model else None,
        "config": dict(model.config) if model else None,
        "prepend_bos": out["prepend_bos"], "seed": out["seed"], "positions": out["positions"],
        "preset": out.get("preset"),
        "methods": defs, "stats": out["stats"], "n_truncated": out["n_truncated"],
        "prompt_lengths": _native.array(out["prompt_lengths"]).tolist(),
        "skipped": {k: list(v) for k, v in out["skipped"].items()},
        # provenance (docs/design.md §1)
        "corpus_sha256": out["corpus_sha256"],
        "corpus_digest_of": "token ids as evaluated (BOS included, after truncation): per prompt its "
                            "length, then its ids, little-endian uint32",
        "tf32": dict(out["tf32"]),
        **_provenance(model.config if model else None),
    }
    return Results(methods=methods, layers=list(out["layers"]), data=data, meta=meta,
                   target_layers={k: v for k, v in target_layers.items() if v})


def _devices(device) -> list[str]:
    """The device list: one name ("cpu", "cuda", "cuda:N") or a list of them (one replica each)."""
    devices = [device] if isinstance(device, str) else list(device)
    if not devices or not all(isinstance(d, str) and d.strip() for d in devices):
        raise ValueError(f"device must be a device name or a non-empty list of them, got {device!r}")
    return [d.strip() for d in devices]


def _cuda_index(device: str) -> int:
    name = device.strip().lower()
    return int(name.split(":", 1)[1]) if ":" in name else 0


def _init_cuda(devices: list[str]):
    """Initialises CUDA through torch (torch.cuda.init) before the core touches a CUDA device:
    torch's own lazy initialisation — its CUDA state, the caching allocator and its settings,
    the checks against use after fork — then happens the way torch expects, so that torch.cuda
    calls made later in this process (memory fraction, synchronize, memory stats) see the same
    state the core uses. Raises InputError when CUDA cannot be initialised."""
    if not any(d.lower().startswith("cuda") for d in devices):
        return
    import torch
    try:
        torch.cuda.init()
    except Exception as e:  # no driver, no device, a CPU-only torch
        raise _native.InputError(f"device {', '.join(devices)}: CUDA cannot be initialised: {e}") from e


def _provenance(config: dict | None) -> dict:
    """Versions and the device an evaluation ran on."""
    import torch

    from . import __version__
    device = config.get("device") if config else None
    return {"simplescope_version": __version__, "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda, "device": device, "device_name": _device_name(device),
            "dtype": config.get("dtype") if config else None}


def _device_name(device: str | None) -> str | None:
    """The GPU's name for "cuda:N", the CPU's model name for "cpu" (None when unknown)."""
    if not device:
        return None
    if device.startswith("cuda"):
        import torch

        idx = int(device.partition(":")[2] or 0)
        return torch.cuda.get_device_name(idx)
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or None


def load(path, device="cpu", dtype: str = "float32") -> Model:
    """Loads a GPT-J from a HF model folder (config.json + safetensors or pytorch_model.bin,
    single or sharded) or a HF cache folder (models--EleutherAI--gpt-j-6b or one of its
    snapshots/<rev>). device: "cpu", "cuda", "cuda:N", or a list of devices (["cuda:0",
    "cuda:1"]: one replica per device; evaluate, patch and generate split their work over them,
    with the results of one device); dtype: "float32", "float16", "bfloat16"."""
    return Model(path, device=device, dtype=dtype)
