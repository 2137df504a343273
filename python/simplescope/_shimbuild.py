"""Build the libtorch shim (libsimplescope_shim.so) against the torch that this Python imports.

Used by the Makefile, by the wheel build, and at import time when the shared library shipped with
the package was built for another torch (the rebuilt copy is cached per torch version).

    python _shimbuild.py SRC_DIR OUT_SO
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

SONAME = "libsimplescope_shim.so"


def torch_build_flags():
    """Compiler and linker flags for the installed torch: include/library paths from
    torch.utils.cpp_extension and the C++ ABI flag from torch._C."""
    import torch
    import torch.utils.cpp_extension as ce

    inc = ce.include_paths()
    libdirs = ce.library_paths()
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    libdir = libdirs[0]
    libs = ["torch", "torch_cpu", "c10"]
    for extra in ("torch_cuda", "c10_cuda"):
        if os.path.exists(os.path.join(libdir, f"lib{extra}.so")):
            libs.append(extra)
    cflags = [f"-D_GLIBCXX_USE_CXX11_ABI={abi}"] + [f"-I{p}" for p in inc]
    cuda_inc = cuda_include_dir() if "c10_cuda" in libs else None
    if cuda_inc:  # lets the shim read the CUDA allocator's memory fraction (sst_cuda_memory)
        cflags += [f"-I{cuda_inc}", "-DSST_CUDA_HEADERS=1"]
    # --no-as-needed: keep libtorch_cuda as a dependency so CUDA kernels register at load time.
    ldflags = [f"-L{d}" for d in libdirs] + ["-Wl,--no-as-needed"] + [f"-l{l}" for l in libs]
    ldflags += ["-Wl,--as-needed"] + [f"-Wl,-rpath,{d}" for d in libdirs]
    return cflags, ldflags, torch.__version__


def cuda_include_dir() -> str | None:
    """A folder with the CUDA runtime headers (cuda_runtime_api.h and the crt/ headers it
    includes) for the CUDA torch was built with: the NVIDIA pip packages beside torch, then
    $CUDA_HOME, /usr/local/cuda. None when there is none: the shim then builds without reading
    the allocator's memory fraction, which the Python binding sends with each request instead
    (the pip packages ship cuda_runtime_api.h without crt/)."""
    import glob
    import torch
    if not torch.version.cuda:
        return None
    site = os.path.dirname(os.path.dirname(torch.__file__))
    cands = sorted(glob.glob(os.path.join(site, "nvidia", "*", "include")))
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            cands.append(os.path.join(os.environ[env], "include"))
    cands.append("/usr/local/cuda/include")
    for d in cands:
        if all(os.path.exists(os.path.join(d, f)) for f in ("cuda_runtime_api.h", os.path.join("crt", "host_config.h"))):
            return d
    return None


def build(src_dir: str, out_path: str, cxx: str | None = None, verbose: bool = False) -> str:
    cxx = cxx or os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise RuntimeError("simplescope: no C++ compiler found (install g++ or set CXX) to build the libtorch shim")
    cflags, ldflags, _ = torch_build_flags()
    src = os.path.join(src_dir, "shim.cpp")
    if not os.path.exists(src):
        raise FileNotFoundError(f"simplescope: shim source {src} not found")
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".shim-", suffix=".so", dir=out_dir)
    os.close(fd)
    cmd = [cxx, "-O2", "-std=c++17", "-fPIC", "-shared", "-fvisibility=hidden",
           "-Wno-deprecated-declarations", *cflags, f"-I{src_dir}", src, "-o", tmp,
           f"-Wl,-soname,{SONAME}", *ldflags]
    if verbose:
        print(" ".join(cmd), file=sys.stderr)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"simplescope: building the libtorch shim failed:\n{' '.join(cmd)}\n{res.stderr[-4000:]}")
        os.replace(tmp, out_path)  # atomic: a half-written library never looks complete
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    with open(out_path + ".torch-version", "w") as f:
        f.write(torch_build_flags()[2])
    return out_path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    build(sys.argv[1], sys.argv[2], verbose=True)
