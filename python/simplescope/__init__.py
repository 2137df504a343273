"""simplescope: what does layer ℓ already know? Patchscope-style decoding of GPT-J's residual
stream (logit lens, token-identity Patchscope, simplescope's target prompt "?") from a Go core
that drives libtorch.

    import simplescope as ss
    model = ss.load("/path/to/gpt-j-6b", device="cuda", dtype="float16")
    res = model.evaluate(texts)            # logitlens, patchscope, simplescope at every layer
    res.prec1["simplescope"]; res.plot("prec1")
"""
from __future__ import annotations

__version__ = "0.1.0"

from .patching import GenerateOutput, PatchOutput, Source  # noqa: E402  (pure Python)
from .results import Results  # noqa: E402  (pure Python; no native code)


def backend_info() -> dict:
    """Versions, devices and library paths of the native backend."""
    import torch

    from . import _native
    lib = _native.lib()
    info = lib.backend_info()
    info.update({
        "simplescope_version": __version__,
        "python_torch_version": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "devices": ["cpu"] + [f"cuda:{i}" for i in range(info.get("cuda_device_count", 0))],
        "library": lib.path,
        "shim": lib.shim_path,
    })
    return info


def load(path, device: str = "cpu", dtype: str = "float32"):
    """Loads a GPT-J model folder; see simplescope.model.load."""
    from .model import load as _load
    return _load(path, device=device, dtype=dtype)


def from_hf(hf_model, tokenizer=None, device=None, dtype=None):
    """A model over a HF transformers GPT-J's own parameters (no copy); see simplescope._hf."""
    from ._hf import from_hf as _from_hf
    return _from_hf(hf_model, tokenizer=tokenizer, device=device, dtype=dtype)


def __getattr__(name):
    if name in ("Model", "Cache"):
        from . import model
        return getattr(model, name)
    if name in ("SimplescopeError", "InputError", "Cancelled", "OutOfMemory", "InternalError"):
        from . import _native
        return getattr(_native, name)
    if name == "tasks":  # ss.tasks without an explicit import (it loads pandas and the task data lazily)
        import importlib
        return importlib.import_module(".tasks", __name__)
    if name == "read_corpus":
        from .data_io import read_corpus
        return read_corpus
    raise AttributeError(f"module 'simplescope' has no attribute {name!r}")


__all__ = ["load", "from_hf", "backend_info", "read_corpus", "Results", "Model", "Source", "PatchOutput",
           "GenerateOutput", "__version__"]
