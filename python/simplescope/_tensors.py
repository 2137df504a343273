"""Tensors across the C boundary without copies (DLPack; docs/tensors.md).

Results carry tensors as handles, {"tensor": id, "dtype": ..., "shape": [...]}; `from_handle`
turns one into a torch.Tensor sharing the core's memory (ss_tensor_export + torch's DLPack
import), `decode_tensors` does it for a whole result. Requests take tensor arguments as
{"tensor": id}: `to_handle` imports a torch tensor or numpy array into the core's registry
without a copy (torch.utils.dlpack.to_dlpack + ss_tensor_import), and `TensorArgs` releases the
handles of one call afterwards, whatever happens.

Ownership, step by step:
  - to_handle: the capsule is marked used *before* ss_tensor_import, so an interruption in between
    can only leak, never free twice; if the import fails the capsule gets its name back and frees
    the tensor as usual. On success the core owns the DLPack tensor until the handle is released
    (and any computation still using it is done).
  - from_handle: ss_tensor_export consumes the handle and returns a DLManagedTensor; a capsule
    around it goes to torch.utils.dlpack.from_dlpack, which calls its deleter when the tensor
    dies. If torch refuses it, its deleter is called here.

CUDA: the core runs on each device's default stream. A caller working on another current stream
gets it synchronised before an argument is imported, and made to wait for the core's work when a
result arrives or the arguments of a call are released.
"""
from __future__ import annotations

import ctypes
import warnings

import numpy as np
import torch
from torch.utils import dlpack as _dlpack

from . import _native

# Capsule names. PyCapsule_New and PyCapsule_SetName keep the pointer, so they live as long as
# the module.
_DLTENSOR = b"dltensor"
_USED = b"used_dltensor"

# Private prototypes (not ctypes.pythonapi's shared function objects, whose argtypes other
# libraries may set differently).
_capi = ctypes.pythonapi
_GetPointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(("PyCapsule_GetPointer", _capi))
_SetName = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(("PyCapsule_SetName", _capi))
_IsValid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(("PyCapsule_IsValid", _capi))
_New = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(("PyCapsule_New", _capi))


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_Deleter = ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor))
_DLManagedTensor._fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _Deleter)]

#: dtypes that may cross (the shim's codes); anything else is refused with a ValueError.
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64,
                    torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)


def _lib():
    lib = _native.lib()
    if not getattr(lib, "_tensors_ready", False):
        f = lib.lib
        vp, u64 = ctypes.c_void_p, ctypes.c_uint64
        f.ss_tensor_export.argtypes = [u64, ctypes.POINTER(vp), ctypes.POINTER(vp)]
        f.ss_tensor_export.restype = ctypes.c_int
        f.ss_tensor_import.argtypes = [vp, ctypes.POINTER(u64), ctypes.POINTER(vp)]
        f.ss_tensor_import.restype = ctypes.c_int
        f.ss_tensor_release.argtypes = [u64]
        f.ss_tensor_release.restype = None
        lib._tensors_ready = True
    return lib


def is_tensor(x) -> bool:
    """Whether x goes through the tensor path (a torch tensor or a numpy array)."""
    return isinstance(x, (torch.Tensor, np.ndarray))


def as_torch(x, name: str = "tensor") -> torch.Tensor:
    """x as a torch tensor that can cross: a torch tensor detached (no graph, same memory), a
    numpy array wrapped without a copy (copied only when torch cannot wrap it: negative strides,
    non-native byte order). Refusals are ValueErrors naming the argument."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        a = x
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name}: numpy dtype {a.dtype} cannot be passed (want a float, int or bool array)")
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # read-only arrays: the core never writes
            try:
                t = torch.from_numpy(a)
            except (ValueError, TypeError, RuntimeError):
                t = torch.from_numpy(np.ascontiguousarray(a))  # e.g. negative strides
    else:
        raise TypeError(f"{name}: expected a torch.Tensor or a numpy array, got {type(x).__name__}")
    if t.layout != torch.strided:
        raise ValueError(f"{name}: {t.layout} tensors cannot be passed (want a dense tensor)")
    if t.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"{name}: dtype {t.dtype} cannot be passed (supported: "
                         + ", ".join(str(d).replace("torch.", "") for d in SUPPORTED_DTYPES) + ")")
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: tensor on {t.device}; simplescope takes CPU or CUDA tensors")
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    return t


def _core_stream_waits_for_caller(t: torch.Tensor) -> None:
    """Before the core reads a CUDA tensor on the default stream: work queued on the caller's
    current stream (when it is another one) must be done."""
    if t.is_cuda:
        cur = torch.cuda.current_stream(t.device)
        if cur != torch.cuda.default_stream(t.device):
            cur.synchronize()


def _caller_stream_waits_for_core(t: torch.Tensor) -> None:
    """After the core worked on a CUDA tensor on the default stream: the caller's current stream
    (when it is another one) waits for that work."""
    if t.is_cuda:
        cur, core = torch.cuda.current_stream(t.device), torch.cuda.default_stream(t.device)
        if cur != core:
            cur.wait_stream(core)


def to_handle(x, name: str = "tensor") -> int:
    """Imports x (a torch tensor on any device and dtype, or a numpy array) into the core's tensor
    registry without a copy and returns its handle id. The caller releases it (`release`, or use
    `TensorArgs`). The core reads x's memory while the handle lives: do not modify x until then."""
    t = as_torch(x, name)
    lib = _lib()
    _core_stream_waits_for_caller(t)
    cap = _dlpack.to_dlpack(t)
    ptr = _GetPointer(cap, _DLTENSOR)
    if _SetName(cap, _USED) != 0:  # from here the capsule's destructor leaves the tensor alone
        raise RuntimeError(f"{name}: could not mark the DLPack capsule as used")
    hid, err = ctypes.c_uint64(), ctypes.c_void_p()
    st = lib.lib.ss_tensor_import(ptr, ctypes.byref(hid), ctypes.byref(err))
    if st != _native.SS_OK:
        _SetName(cap, _DLTENSOR)  # the import failed: the capsule owns the tensor again
        _native._raise(st, f"{name}: {lib._err(err)}")
    return hid.value


def _call_deleter(ptr: int) -> None:
    m = _DLManagedTensor.from_address(ptr)
    if m.deleter:
        m.deleter(ctypes.cast(ptr, ctypes.POINTER(_DLManagedTensor)))


def from_handle(hid: int) -> torch.Tensor:
    """The tensor a result's handle names, as a torch.Tensor sharing the core's memory (same
    device, dtype and storage; no copy). Consumes the handle. The tensor holds its own reference:
    it stays valid after the model is closed and frees its memory when it is dropped."""
    lib = _lib()
    ptr, err = ctypes.c_void_p(), ctypes.c_void_p()
    st = lib.lib.ss_tensor_export(ctypes.c_uint64(hid), ctypes.byref(ptr), ctypes.byref(err))
    if st != _native.SS_OK:
        _native._raise(st, lib._err(err))
    cap = _New(ptr.value, _DLTENSOR, None)
    try:
        t = _dlpack.from_dlpack(cap)
    except BaseException:
        if _IsValid(cap, _DLTENSOR):  # torch did not take it
            _SetName(cap, _USED)
            _call_deleter(ptr.value)
        raise
    _caller_stream_waits_for_core(t)
    return t


def release(hid: int) -> None:
    """Frees a handle still held (an unknown or already used id is ignored)."""
    _lib().lib.ss_tensor_release(ctypes.c_uint64(hid))


def is_ref(obj) -> bool:
    """Whether obj is a tensor reference of a result: {"tensor": id, "dtype": ..., "shape": ...}."""
    return (isinstance(obj, dict) and "tensor" in obj and isinstance(obj["tensor"], int)
            and set(obj) <= {"tensor", "dtype", "shape"})


def _refs(obj, out: list) -> list:
    if is_ref(obj):
        out.append(obj["tensor"])
    elif isinstance(obj, dict):
        for v in obj.values():
            _refs(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _refs(v, out)
    return out


def _replace(obj, tensors: dict):
    if is_ref(obj):
        return tensors[obj["tensor"]]
    if isinstance(obj, dict):
        return {k: _replace(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace(v, tensors) for v in obj]
    return obj


def decode_tensors(obj):
    """A decoded msgpack result with every {"tensor": id, ...} map replaced by its torch tensor.
    If an export fails, every id not yet exported is released before the error propagates."""
    ids = _refs(obj, [])
    if not ids:
        return obj
    tensors = {}
    try:
        for hid in ids:
            tensors[hid] = from_handle(hid)
    except BaseException:
        for hid in ids:
            if hid not in tensors:
                release(hid)
        raise
    return _replace(obj, tensors)


class TensorArgs:
    """The tensor arguments of one call: `arg(x, name)` imports x and returns {"tensor": id} for
    the request; leaving the `with` block releases every id, whether the call succeeded or not.

        with TensorArgs() as args:
            out = model._call("method", {"vecs": args.arg(vecs, "vecs")})
    """

    def __init__(self):
        self.ids: list[int] = []
        self._cuda: list[torch.Tensor] = []

    def arg(self, x, name: str) -> dict:
        hid = to_handle(x, name)
        self.ids.append(hid)
        if isinstance(x, torch.Tensor) and x.is_cuda:
            self._cuda.append(x)
        return {"tensor": hid}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        ids, self.ids = self.ids, []
        for hid in ids:
            release(hid)
        for t in self._cuda:  # kernels reading the arguments may still be queued
            _caller_stream_waits_for_core(t)
        self._cuda = []
        return False
