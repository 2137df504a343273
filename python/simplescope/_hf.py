"""ss.from_hf: a simplescope model over a HF transformers causal LM's own parameters (no copy), of any
family simplescope supports (GPT-J, GPT-NeoX, GPT-2, Llama, Mistral, Qwen2, Qwen3, Gemma)."""
from __future__ import annotations

import ctypes
import os

import torch

from . import _native, _tensors

_BUNDLED_TOKENIZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tokenizer")


def _dtype_name(d: torch.dtype) -> str:
    return str(d).replace("torch.", "")


def from_hf(hf_model, tokenizer=None, device=None, dtype=None):
    """A Model whose weights are `hf_model`'s parameters (GPTJForCausalLM, GPTNeoXForCausalLM,
    GPT2LMHeadModel, LlamaForCausalLM, …), shared, not copied.

    device, dtype: default to the parameters' own; another dtype or device makes one converted
    copy of each weight instead. tokenizer: a folder with tokenizer.json; None for the GPT-J
    tokenizer bundled with the package (GPT-J and GPT-2) or, for another family, the
    tokenizer.json of the folder the model was loaded from when there is one; False for none
    (token ids only).

    The model holds its own reference to the parameters' memory: it stays valid after `del
    hf_model`. Changing the parameters in place (training, patching weights) changes what the
    simplescope model computes; do not do it while a call runs.
    """
    from .model import Model

    params = hf_model.state_dict()
    first = hf_model.get_input_embeddings().weight
    device = str(first.device) if device is None else str(device)
    dtype = _dtype_name(first.dtype) if dtype is None else _dtype_name(dtype) if isinstance(dtype, torch.dtype) else str(dtype)
    if tokenizer is None:
        tokenizer = _default_tokenizer(hf_model.config)
    lib = _native.lib()
    _tensors._lib()
    f = lib.lib
    if not getattr(lib, "_from_tensors_ready", False):
        f.ss_model_from_tensors.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p),
                                            ctypes.POINTER(ctypes.c_void_p)]
        f.ss_model_from_tensors.restype = ctypes.c_int
        lib._from_tensors_ready = True
    name = f"<from_hf {type(hf_model).__name__}>"
    with _tensors.TensorArgs() as args:
        req = {
            "config": hf_model.config.to_json_string().encode(),
            # every floating-point weight by its checkpoint name (the core reads its family's
            # names and ignores the rest); not the attention-mask buffers old GPT-J / GPT-2 carry
            "tensors": {k: args.arg(v, k) for k, v in params.items()
                        if v.is_floating_point() and not k.endswith((".attn.bias", ".attn.masked_bias"))},
            "dtype": dtype, "device": device,
            "tokenizer": os.fspath(tokenizer) if tokenizer else "", "name": name,
        }
        body = _native.pack(req)
        h, err = ctypes.c_void_p(), ctypes.c_void_p()
        st = f.ss_model_from_tensors(body, len(body), ctypes.byref(h), ctypes.byref(err))
        if st != _native.SS_OK:
            _native._raise(st, lib._err(err))
    m = Model.__new__(Model)
    m._adopt(lib, h, name)
    return m


def _default_tokenizer(config):
    """The bundled GPT-J tokenizer for GPT-J and GPT-2 (the same byte-level BPE); for another
    family the tokenizer.json beside the checkpoint the model came from, or none."""
    if config.model_type in ("gptj", "gpt2"):
        return _BUNDLED_TOKENIZER
    src = getattr(config, "_name_or_path", "") or ""
    if src and os.path.isfile(os.path.join(src, "tokenizer.json")):
        return src
    return False
