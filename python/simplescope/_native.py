"""Private ctypes binding to the Go library (libsimplescope.so) and the libtorch shim.

`import torch` happens first, so the process holds exactly one libtorch (the one torch loaded);
then the shim is loaded with RTLD_GLOBAL (it links against that torch), then the Go library,
whose dependency on the shim's soname is satisfied by the copy already loaded.

Where the libraries live, in order:
  1. $SIMPLESCOPE_LIB_DIR;
  2. the package's own _lib/ folder (a wheel or `pip install .`);
  3. <repo>/build/lib (a source checkout after `make build`).
If the shim found there was built for another torch version, it is rebuilt from the shipped
source for the installed torch into ~/.cache/simplescope/<torch version>/ (needs g++).
"""
from __future__ import annotations

import ctypes
import os
import threading

import msgpack
import numpy as np
import torch  # noqa: F401  (must be imported before the libraries load)

from . import _shimbuild

SHIM = "libsimplescope_shim.so"
GOLIB = "libsimplescope.so"

# Status codes (capi/simplescope.h).
SS_OK, SS_ERR_INPUT, SS_ERR_RUNTIME, SS_ERR_OOM, SS_ERR_CANCELLED, SS_ERR_PANIC, SS_ERR_NOT_FOUND = range(7)


class SimplescopeError(RuntimeError):
    """A failure inside simplescope's native code."""


class InternalError(SimplescopeError):
    """An internal error (a recovered Go panic). The model stays usable."""


class Cancelled(SimplescopeError):
    """The run was cancelled."""


class OutOfMemory(SimplescopeError, MemoryError):
    """The device ran out of memory."""


class InputError(ValueError):
    """Bad input: the message says which argument, file, layer or tensor."""


def _raise(status: int, msg: str):
    if status == SS_ERR_INPUT:
        raise InputError(msg)
    if status == SS_ERR_NOT_FOUND:
        raise FileNotFoundError(msg)
    if status == SS_ERR_OOM:
        raise OutOfMemory(msg)
    if status == SS_ERR_CANCELLED:
        raise Cancelled(msg)
    if status == SS_ERR_PANIC:
        raise InternalError(msg)
    raise SimplescopeError(msg)


_here = os.path.dirname(os.path.abspath(__file__))


def _candidate_dirs():
    env = os.environ.get("SIMPLESCOPE_LIB_DIR")
    if env:
        yield env
    yield os.path.join(_here, "_lib")
    yield os.path.normpath(os.path.join(_here, "..", "..", "build", "lib"))


def find_lib_dir() -> str:
    tried = []
    for d in _candidate_dirs():
        tried.append(d)
        if os.path.exists(os.path.join(d, GOLIB)):
            return d
    raise ImportError(
        "simplescope: the native library libsimplescope.so was not found (looked in "
        + ", ".join(tried) + "). In a source checkout run `make build`; otherwise reinstall the package.")


def _shim_path(lib_dir: str) -> str:
    """The shim built for the installed torch: the shipped one if it matches, else a cached
    rebuild."""
    shipped = os.path.join(lib_dir, SHIM)
    want = torch.__version__
    stamp = shipped + ".torch-version"
    if os.path.exists(shipped) and os.path.exists(stamp) and open(stamp).read().strip() == want:
        return shipped
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "simplescope", want)
    cached = os.path.join(cache, SHIM)
    if os.path.exists(cached):
        return cached
    src = os.path.join(lib_dir, "csrc")
    if not os.path.exists(os.path.join(src, "shim.cpp")):
        src = os.path.normpath(os.path.join(_here, "..", "..", "core", "torch", "csrc"))
    return _shimbuild.build(src, cached)


class _Lib:
    def __init__(self):
        self.dir = find_lib_dir()
        self.shim_path = _shim_path(self.dir)
        self.shim = ctypes.CDLL(self.shim_path, mode=ctypes.RTLD_GLOBAL)
        self.path = os.path.join(self.dir, GOLIB)
        lib = ctypes.CDLL(self.path, mode=ctypes.RTLD_GLOBAL)
        self.lib = lib
        u8p = ctypes.POINTER(ctypes.c_uint8)
        cp = ctypes.c_char_p
        vp = ctypes.c_void_p
        sz = ctypes.c_size_t
        i64 = ctypes.c_int64
        lib.ss_free.argtypes = [vp]
        lib.ss_free.restype = None
        lib.ss_live_tensors.restype = i64
        lib.ss_backend_info.argtypes = [ctypes.POINTER(u8p), ctypes.POINTER(sz), ctypes.POINTER(vp)]
        lib.ss_model_load.argtypes = [cp, cp, cp, ctypes.POINTER(vp), ctypes.POINTER(vp)]
        lib.ss_model_free.argtypes = [vp]
        lib.ss_model_free.restype = None
        lib.ss_call.argtypes = [vp, cp, ctypes.c_char_p, sz, ctypes.POINTER(u8p), ctypes.POINTER(sz), ctypes.POINTER(vp)]
        lib.ss_run_start.argtypes = [vp, cp, ctypes.c_char_p, sz, ctypes.POINTER(vp), ctypes.POINTER(vp)]
        lib.ss_run_poll.argtypes = [vp, ctypes.POINTER(i64), ctypes.POINTER(i64), ctypes.POINTER(ctypes.c_int)]
        lib.ss_run_cancel.argtypes = [vp]
        lib.ss_run_cancel.restype = None
        lib.ss_run_wait.argtypes = [vp, ctypes.POINTER(u8p), ctypes.POINTER(sz), ctypes.POINTER(vp)]
        lib.ss_run_free.argtypes = [vp]
        lib.ss_run_free.restype = None

    def _err(self, errp: ctypes.c_void_p) -> str:
        if not errp.value:
            return "unknown error"
        msg = ctypes.string_at(errp.value).decode("utf-8", "replace")
        self.lib.ss_free(errp)
        return msg

    def _take(self, out, out_len) -> bytes:
        b = ctypes.string_at(out, out_len.value)
        self.lib.ss_free(ctypes.cast(out, ctypes.c_void_p))
        return b

    def backend_info(self) -> dict:
        out, n, err = ctypes.POINTER(ctypes.c_uint8)(), ctypes.c_size_t(), ctypes.c_void_p()
        st = self.lib.ss_backend_info(ctypes.byref(out), ctypes.byref(n), ctypes.byref(err))
        if st != SS_OK:
            _raise(st, self._err(err))
        return unpack(self._take(out, n))

    def load(self, path: str, device: str, dtype: str) -> ctypes.c_void_p:
        h, err = ctypes.c_void_p(), ctypes.c_void_p()
        st = self.lib.ss_model_load(os.fsencode(path), device.encode(), dtype.encode(), ctypes.byref(h), ctypes.byref(err))
        if st != SS_OK:
            _raise(st, self._err(err))
        return h

    def free(self, h):
        self.lib.ss_model_free(h)

    def call(self, h, method: str, req: dict | None = None) -> dict:
        body = pack(_with_threads(req))
        out, n, err = ctypes.POINTER(ctypes.c_uint8)(), ctypes.c_size_t(), ctypes.c_void_p()
        st = self.lib.ss_call(h, method.encode(), body, len(body), ctypes.byref(out), ctypes.byref(n), ctypes.byref(err))
        if st != SS_OK:
            _raise(st, self._err(err))
        return unpack(self._take(out, n))

    def run(self, h, method: str, req: dict, on_progress=None, poll: float = 0.05) -> dict:
        """Runs a method in a Go goroutine, polling progress. Ctrl-C (KeyboardInterrupt) cancels
        the run, waits for it to stop at the next batch boundary, and re-raises."""
        body = pack(_with_threads(req))
        r, err = ctypes.c_void_p(), ctypes.c_void_p()
        st = self.lib.ss_run_start(h, method.encode(), body, len(body), ctypes.byref(r), ctypes.byref(err))
        if st != SS_OK:
            _raise(st, self._err(err))
        done, total, fin = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_int()
        ev = threading.Event()
        try:
            while True:
                self.lib.ss_run_poll(r, ctypes.byref(done), ctypes.byref(total), ctypes.byref(fin))
                if on_progress is not None:
                    on_progress(done.value, total.value)
                if fin.value:
                    break
                ev.wait(poll)
        except BaseException:
            self.lib.ss_run_cancel(r)
            self.lib.ss_run_free(r)  # waits until the Go side has stopped
            raise
        out, n = ctypes.POINTER(ctypes.c_uint8)(), ctypes.c_size_t()
        try:
            st = self.lib.ss_run_wait(r, ctypes.byref(out), ctypes.byref(n), ctypes.byref(err))
        finally:
            self.lib.ss_run_free(r)
        if st != SS_OK:
            _raise(st, self._err(err))
        return unpack(self._take(out, n))

    def live_tensors(self) -> int:
        return int(self.lib.ss_live_tensors())


def _with_threads(req: dict | None) -> dict:
    """Adds torch's current thread count, which the Go side applies on the OS thread that serves
    the call (results then do not depend on which thread that is)."""
    req = dict(req or {})
    req.setdefault("num_threads", torch.get_num_threads())
    return req


_lib = None
_lib_lock = threading.Lock()


def lib() -> _Lib:
    global _lib
    if _lib is None:
        with _lib_lock:
            if _lib is None:
                _lib = _Lib()
    return _lib


def pack(obj) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def _default(o):
    if isinstance(o, np.ndarray):
        a = np.ascontiguousarray(o)
        if a.dtype.kind in "iu":
            a = a.astype("<i8")
        elif a.dtype.kind == "f":
            a = a.astype("<f4")
        return {"dtype": str(a.dtype.newbyteorder("=").name), "shape": list(a.shape), "data": a.tobytes()}
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"cannot send {type(o).__name__} to simplescope")


def unpack(b: bytes):
    return msgpack.unpackb(b, raw=False, strict_map_key=False)


def array(d) -> np.ndarray:
    """Turns a {"dtype", "shape", "data"} map into a numpy array (no per-element work)."""
    return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"]).newbyteorder("<")).reshape(d["shape"]).astype(d["dtype"], copy=False)
