"""Tensors cross the C boundary without copies (issue 12; docs/tensors.md).

run_with_cache returns torch tensors that ARE the core's tensors (data pointers compared with the
core's own through debug.tensor_info), equal to HF transformers' hidden states; they outlive the
model and give their memory back when dropped; tensor arguments (torch or numpy) are imported
without a copy, converted or refused with a ValueError naming the argument; the C functions keep
DLPack ownership straight on success and on failure."""
import ctypes
import gc
import os

import numpy as np
import pytest
import torch

import simplescope as ss
from simplescope import _native, _tensors
from helpers import assert_close

TOL_F32 = 1e-4


def live():
    gc.collect()
    return _native.lib().live_tensors()


def core_info(model, hid):
    """The core's view of a registered tensor (data pointer, dtype, ...) without taking it."""
    return model._call("debug.tensor_info", {"tensor": hid})


def hf_hidden_states(hf_model, ids):
    """HF's output_hidden_states, with the last block's output before ln_f from a forward hook
    (HF's last hidden state is after ln_f; TransformerLens's blocks.{L-1}.hook_resid_post is not)."""
    last = {}
    L = len(hf_model.transformer.h)
    h = hf_model.transformer.h[L - 1].register_forward_hook(
        lambda mod, inp, out: last.__setitem__("x", (out[0] if isinstance(out, tuple) else out).detach()))
    try:
        with torch.no_grad():
            out = hf_model(input_ids=torch.as_tensor(ids), output_hidden_states=True, use_cache=False)
    finally:
        h.remove()
    sites = {"hook_embed": out.hidden_states[0]}
    for l in range(L - 1):
        sites[f"blocks.{l}.hook_resid_post"] = out.hidden_states[l + 1]
    sites[f"blocks.{L - 1}.hook_resid_post"] = last["x"]
    return out.logits, sites


# ------------------------------------------------------------------------------ run_with_cache

def test_run_with_cache_is_the_cores_memory(model, monkeypatch):
    """Every tensor run_with_cache returns has the data pointer of the tensor the core registered:
    no copy between the forward pass and the caller."""
    seen = {}
    real = _tensors.from_handle

    def spy(hid):
        seen[hid] = core_info(model, hid)
        t = real(hid)
        seen[hid]["py"] = t
        return t

    monkeypatch.setattr(_tensors, "from_handle", spy)
    ids = model.tokenize("The quick brown fox jumps over the lazy dog.", prepend_bos=True)
    logits, cache = model.run_with_cache(ids)
    assert len(seen) == 1 + model.n_layers + 1, f"{len(seen)} tensors exported"
    for t in [logits, *cache.values()]:
        assert isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.dtype == torch.float32
    by_ptr = {info["data_ptr"]: info for info in seen.values()}
    for name, t in [("logits", logits), *cache.items()]:
        info = by_ptr.get(t.data_ptr())
        assert info is not None, f"{name} at {t.data_ptr():#x} is not a tensor the core registered"
        assert info["py"] is t and info["dtype"] == "float32" and info["shape"] == list(t.shape), (name, info)
        assert info["contiguous"] and t.is_contiguous()
    assert logits.shape == (1, len(ids), model.config["vocab_size"])


def test_run_with_cache_equals_hf_hidden_states(model, hf_model):
    ids = model.tokenize("The Eiffel Tower is in the city of Paris, and", prepend_bos=True)
    logits, cache = model.run_with_cache(ids)
    want_logits, want = hf_hidden_states(hf_model, [ids])
    assert set(cache) == set(want)
    assert_close("logits", logits.numpy(), want_logits.numpy(), TOL_F32)
    for name, w in want.items():
        assert_close(name, cache[name].numpy(), w.numpy(), TOL_F32)


def test_names_filter_forms(model):
    ids = [50256, 464, 3797, 3332]
    full_logits, full = model.run_with_cache(ids)
    L = model.n_layers
    forms = {
        "str": "blocks.1.hook_resid_post",
        "list": ["hook_embed", "blocks.1.hook_resid_post"],
        "callable": lambda n: n.endswith(f"{L - 1}.hook_resid_post"),
    }
    want = {"str": {"blocks.1.hook_resid_post"}, "list": {"hook_embed", "blocks.1.hook_resid_post"},
            "callable": {f"blocks.{L - 1}.hook_resid_post"}}
    for k, f in forms.items():
        lg, c = model.run_with_cache(ids, names_filter=f)
        assert set(c) == want[k], k
        assert torch.equal(lg, full_logits)
        for n in c:
            assert torch.equal(c[n], full[n]), (k, n)
    _, c = model.run_with_cache(ids, names=["hook_embed"])  # the old keyword
    assert set(c) == {"hook_embed"}
    with pytest.raises(TypeError, match="not both"):
        model.run_with_cache(ids, names_filter="hook_embed", names=["hook_embed"])


TOKEN_FORMS = {
    "torch int64": lambda ids: torch.tensor([ids]),
    "torch int32 1-D": lambda ids: torch.tensor(ids, dtype=torch.int32),
    "torch non-contiguous": lambda ids: torch.tensor([ids, ids]).t().contiguous().t()[:1],
    "numpy int64": lambda ids: np.asarray([ids]),
    "numpy int32 reversed view": lambda ids: np.asarray(ids[::-1], dtype=np.int32)[::-1],
    "numpy read-only": lambda ids: _ro(ids),
}


def _ro(ids):
    a = np.asarray([ids])
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("form", sorted(TOKEN_FORMS))
def test_token_batches_as_tensors(model, form):
    ids = model.tokenize("Hello there, general Kenobi.", prepend_bos=True)
    want, _ = model.run_with_cache([ids], names_filter=[])
    base = live()
    x = TOKEN_FORMS[form](ids)
    got, cache = model.run_with_cache(x, names_filter=[])
    assert cache == {}
    assert torch.equal(got, want), form
    del got
    assert live() == base, f"{form}: {live() - base} tensors left behind"


@pytest.mark.parametrize("bad,match", [
    (torch.tensor([[1.0, 2.0]]), "tokens: dtype float32 given, expected an integer tensor"),
    (np.ones((1, 3), dtype=np.float64), "tokens: dtype float64 given, expected an integer tensor"),
    (torch.ones((1, 2, 3), dtype=torch.int64), r"tokens: shape \[1 2 3\], expected \[batch, pos\] or \[pos\]"),
    (torch.tensor([[True, False]]), "tokens: dtype bool given, expected an integer tensor"),
    (torch.tensor([[1, 2]], dtype=torch.complex64), "tokens: dtype torch.complex64 cannot be passed"),
    (np.array([["a", "b"]]), "tokens: numpy dtype <U1 cannot be passed"),
])
def test_bad_token_tensors_raise_value_error(model, bad, match):
    base = live()
    with pytest.raises(ValueError, match=match):
        model.run_with_cache(bad)
    assert live() == base, "a refused argument left a tensor behind"


def test_numpy_return_type_shares_memory(model):
    ids = [50256, 464, 3797]
    logits, cache = model.run_with_cache(ids, return_type="numpy")
    assert isinstance(logits, np.ndarray) and logits.dtype == np.float32
    assert all(isinstance(v, np.ndarray) for v in cache.values())
    with pytest.raises(ValueError, match="return_type"):
        model.run_with_cache(ids, return_type="jax")


# ------------------------------------------------------------------------------ lifetimes

def test_results_outlive_the_model(tiny_dir):
    base = live()
    m = ss.load(tiny_dir)
    ids = [50256, 464, 3797, 3332, 319]
    logits, cache = m.run_with_cache(ids)
    want_logits, want_c = logits.clone(), cache["blocks.2.hook_resid_post"].clone()
    m.close()
    assert torch.equal(logits, want_logits), "logits changed after close()"
    assert torch.equal(cache["blocks.2.hook_resid_post"], want_c)
    del m
    gc.collect()
    junk = [torch.randn(1000, 1000) for _ in range(4)]  # reuse freed memory, if any was freed
    del junk
    assert torch.equal(logits, want_logits), "logits changed after del model + gc"
    assert float(logits.sum()) == float(want_logits.sum())
    assert live() > base, "the results should still count as live tensors"
    del logits, cache
    assert live() == base, f"{live() - base} tensors alive after dropping every result"


def _rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_thousand_calls_keep_memory_flat(tiny_dir):
    """1000 run_with_cache calls, results dropped each time: live tensors back to the baseline and
    RSS within +5%."""
    m = ss.load(tiny_dir)
    try:
        ids = np.asarray([[50256, 464, 3797, 3332, 319, 262, 2603, 13]] * 2)
        for _ in range(50):  # warm-up: allocator pools, thread pools
            m.run_with_cache(ids)
        base, rss0 = live(), _rss_kb()
        for i in range(1000):
            logits, cache = m.run_with_cache(ids if i % 2 else ids.tolist())
            del logits, cache
        rss1 = _rss_kb()
        growth = (rss1 - rss0) / rss0
        print(f"1000 calls: live {base} -> {live()}, RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB ({100 * growth:+.2f}%)")
        assert live() == base
        assert growth < 0.05, f"RSS grew {100 * growth:.2f}%"
    finally:
        m.close()


# ------------------------------------------------------------------------------ tensor arguments

@pytest.mark.parametrize("make", [
    lambda: torch.randn(3, 5),
    lambda: torch.randn(3, 5, dtype=torch.bfloat16),
    lambda: torch.randn(3, 5, requires_grad=True),
    lambda: torch.randn(5, 3).t(),  # non-contiguous: imported as it is, converted when used
    lambda: torch.arange(12, dtype=torch.int32).reshape(3, 4),
], ids=["float32", "bfloat16", "requires_grad", "transposed", "int32"])
def test_torch_args_are_imported_without_copy(model, make):
    x = make()
    base = live()
    hid = _tensors.to_handle(x, "x")
    try:
        info = core_info(model, hid)
        assert info["data_ptr"] == x.data_ptr(), "the import copied the tensor"
        assert info["dtype"] == str(x.dtype).replace("torch.", "") and info["shape"] == list(x.shape)
        assert info["contiguous"] == x.is_contiguous()
    finally:
        _tensors.release(hid)
    assert live() == base
    # a round trip comes back as the same memory, without a graph
    y = _tensors.from_handle(_tensors.to_handle(x, "x"))
    assert y.data_ptr() == x.data_ptr() and y.dtype == x.dtype and y.stride() == x.stride()
    assert torch.equal(y, x.detach()) and not y.requires_grad
    del y
    assert live() == base


def test_numpy_args(model):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    hid = _tensors.to_handle(a, "a")
    try:
        assert core_info(model, hid)["data_ptr"] == a.ctypes.data, "a numpy array was copied"
    finally:
        _tensors.release(hid)
    rev = a[::-1]  # negative strides: torch cannot wrap it, so it is copied once
    y = _tensors.from_handle(_tensors.to_handle(rev, "rev"))
    assert np.array_equal(y.numpy(), rev)
    big = np.arange(6, dtype=">i8")  # non-native byte order: converted
    assert np.array_equal(_tensors.from_handle(_tensors.to_handle(big, "big")).numpy(), big)


def test_import_keeps_the_memory_alive():
    base = live()
    x = torch.arange(6.0)
    hid = _tensors.to_handle(x, "x")
    ptr = x.data_ptr()
    del x
    gc.collect()
    y = _tensors.from_handle(hid)
    assert y.data_ptr() == ptr and torch.equal(y, torch.arange(6.0))
    del y
    assert live() == base


def test_bad_args_raise_value_error():
    for x, match in [(torch.zeros(2, dtype=torch.complex64), "x: dtype torch.complex64 cannot be passed"),
                     (torch.zeros(2, 2).to_sparse(), "x: torch.sparse_coo tensors cannot be passed"),
                     (np.array([object()]), "x: numpy dtype object cannot be passed"),
                     (torch.zeros(2, device="meta"), "x: tensor on meta")]:
        with pytest.raises(ValueError, match=match):
            _tensors.to_handle(x, "x")
    with pytest.raises(TypeError, match="x: expected a torch.Tensor or a numpy array, got list"):
        _tensors.to_handle([1.0], "x")


def test_stale_handles(model):
    hid = _tensors.to_handle(torch.ones(2), "x")
    _tensors.from_handle(hid)
    with pytest.raises(ValueError, match="unknown tensor handle"):
        _tensors.from_handle(hid)
    _tensors.release(hid)  # already gone: ignored
    _tensors.release(1 << 60)
    with pytest.raises(ValueError, match="tokens: unknown tensor handle"):
        model._call("run_with_cache", {"tokens": {"tensor": 1 << 60}})


def test_tensor_args_released_when_the_call_fails(model):
    base = live()
    with pytest.raises(ValueError, match="id 50400 out of range"):
        model.run_with_cache(torch.tensor([[1, 50400]]))
    with pytest.raises(RuntimeError, match="boom"):
        with _tensors.TensorArgs() as args:
            args.arg(torch.ones(3), "a")
            args.arg(np.ones(3), "b")
            raise RuntimeError("boom")
    assert live() == base


def test_decode_tensors_releases_the_rest_when_an_export_fails(model):
    base = live()
    out = model._call("run_with_cache", {"tokens": [[1, 2, 3]]})
    refs = [out["logits"], *out["cache"].values()]
    assert all(_tensors.is_ref(r) for r in refs) and live() == base + len(refs)
    out["cache"]["bogus"] = {"tensor": 1 << 60, "dtype": "float32", "shape": [1]}
    with pytest.raises(ValueError, match="unknown tensor handle"):
        _tensors.decode_tensors(out)
    assert live() == base, f"{live() - base} tensors left after a failed decode"


# ------------------------------------------------------------------------------ the C functions

class _Owner:
    """A DLManagedTensor made by hand (over a numpy buffer) whose deleter counts its calls."""

    def __init__(self, device_type=1, dtype=(2, 32, 1), shape=(2, 3)):
        self.buf = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        self.shape = (ctypes.c_int64 * len(shape))(*shape)
        self.calls = 0

        def deleter(p):
            self.calls += 1

        self.cb = _tensors._Deleter(deleter)
        m = _tensors._DLManagedTensor()
        m.dl_tensor.data = self.buf.ctypes.data
        m.dl_tensor.device.device_type = device_type
        m.dl_tensor.ndim = len(shape)
        m.dl_tensor.dtype.code, m.dl_tensor.dtype.bits, m.dl_tensor.dtype.lanes = dtype
        m.dl_tensor.shape = self.shape
        m.deleter = self.cb
        self.m = m

    def ptr(self):
        return ctypes.addressof(self.m)


def _import(ptr):
    lib = _tensors._lib()
    hid, err = ctypes.c_uint64(), ctypes.c_void_p()
    st = lib.lib.ss_tensor_import(ctypes.c_void_p(ptr), ctypes.byref(hid), ctypes.byref(err))
    return st, hid.value, (lib._err(err) if st else "")


@pytest.mark.parametrize("kw,match", [
    (dict(device_type=7), "DLPack device type 7 not supported"),  # Vulkan memory
    (dict(dtype=(5, 64, 1)), "unsupported dtype ComplexFloat"),   # kDLComplex
    (dict(dtype=(1, 16, 1)), "unsupported dtype UInt16"),         # kDLUInt 16: no shim code
    (dict(dtype=(3, 64, 1)), "Unsupported code 3"),               # kDLOpaqueHandle
    (dict(dtype=(2, 32, 4)), "lanes != 1"),
], ids=["vulkan", "complex64", "uint16", "opaque", "lanes"])
def test_c_import_failure_leaves_ownership_with_the_caller(kw, match):
    o = _Owner(**kw)
    st, _, msg = _import(o.ptr())
    assert st == _native.SS_ERR_INPUT and match in msg, (st, msg)
    gc.collect()
    assert o.calls == 0, "a failed import called the caller's deleter"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_c_import_of_cuda_memory_without_cuda():
    o = _Owner(device_type=2)  # kDLCUDA
    st, _, msg = _import(o.ptr())
    assert st == _native.SS_ERR_INPUT and "does not exist" in msg, (st, msg)
    assert o.calls == 0


def test_c_import_success_owns_and_deletes_once(model):
    base = live()
    o = _Owner()
    st, hid, msg = _import(o.ptr())
    assert st == _native.SS_OK, msg
    assert core_info(model, hid)["data_ptr"] == o.buf.ctypes.data
    y = _tensors.from_handle(hid)  # the export holds the storage; the import's handle is gone
    assert o.calls == 0
    assert np.array_equal(y.numpy(), o.buf)
    del y
    gc.collect()
    assert o.calls == 1, f"deleter called {o.calls} times"
    assert live() == base
    st, hid, msg = _import(o.ptr())
    assert st == _native.SS_OK, msg
    _tensors.release(hid)
    assert o.calls == 2


def test_background_run_freed_unread_releases_its_tensors(model):
    """A run whose result is never taken (ss_run_free after it finished) gives back the tensors
    its result names."""
    lib = _native.lib()
    base = live()
    body = _native.pack({"tokens": [[1, 2, 3, 4]]})
    r, err = ctypes.c_void_p(), ctypes.c_void_p()
    with model._using() as h:
        st = lib.lib.ss_run_start(h, b"run_with_cache", body, len(body), ctypes.byref(r), ctypes.byref(err))
        assert st == _native.SS_OK, lib._err(err)
        done, total, fin = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_int()
        while not fin.value:
            lib.lib.ss_run_poll(r, ctypes.byref(done), ctypes.byref(total), ctypes.byref(fin))
        assert live() > base, "the finished result should hold its tensors"
        lib.lib.ss_run_free(r)
    assert live() == base, f"{live() - base} tensors left by an unread result"
