"""Build simplescope's native libraries for a wheel (used by setup.py's build_py step).

Produces, in an output folder (the wheel's simplescope/_lib/):
    libsimplescope_shim.so                 the C++ shim over ATen, built against the user's torch
    libsimplescope_shim.so.torch-version   the torch version it was built for
    libsimplescope.so                      `go build -buildmode=c-shared ./capi`
    csrc/shim.cpp, csrc/shim.h             so the shim can be rebuilt at import for another torch
    include/simplescope.h                  the public C header

The shim needs PyTorch's headers, but torch is deliberately not a build requirement (pip would
install a second copy into its isolated build environment). So the build looks for an
interpreter that can import torch, in this order:
    1. $SIMPLESCOPE_TORCH_PYTHON (only that one when set);
    2. the interpreter running the build, when it can import torch (`--no-build-isolation`);
    3. the same interpreter with pip's isolation undone (PYTHONPATH, PYTHONNOUSERSITE, ... dropped):
       under `pip install .` that is the target environment's own site-packages;
    4. the interpreters of the parent processes (the frontend: `python -m build`, `pip wheel`),
       also with a cleaned environment.

    python tools/build_native.py REPO_ROOT OUT_DIR WORK_DIR     (for manual use)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

SHIM = "libsimplescope_shim.so"
GOLIB = "libsimplescope.so"
# Environment variables through which pip / build isolate a build; dropped to see the user's site.
_ISOLATION_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "PIP_BUILD_TRACKER", "PIP_REQ_TRACKER", "PEP517_BUILD_BACKEND",
                   "_PYPROJECT_HOOKS_BUILD_BACKEND", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__")
_PROBE = "import json, sys, torch; print(json.dumps({'torch': torch.__version__, 'executable': sys.executable}))"


class BuildError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"simplescope build: {msg}", file=sys.stderr, flush=True)


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _ISOLATION_VARS}
    # Drop PATH entries inside pip's / build's temporary build environments.
    parts = [p for p in env.get("PATH", "").split(os.pathsep)
             if p and "build-env-" not in p]  # pip-build-env-*, build-env-*
    env["PATH"] = os.pathsep.join(parts)
    return env


def _ancestor_pythons(levels: int = 8):
    """Interpreters of the parent processes, as they were invoked (argv[0], not the resolved
    symlink, so a venv's python stays that venv's)."""
    pid = os.getppid()
    for _ in range(levels):
        if pid <= 1:
            return
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            cwd = os.readlink(f"/proc/{pid}/cwd")
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return
        if argv:
            exe = argv[0]
            if os.sep not in exe:
                exe = shutil.which(exe, path=_clean_env()["PATH"]) or ""
            elif not os.path.isabs(exe):
                exe = os.path.join(cwd, exe)
            if exe and os.path.basename(exe).startswith("python") and os.access(exe, os.X_OK):
                yield exe
        pid = ppid


def _probe(python: str, env: dict | None) -> dict | None:
    try:
        res = subprocess.run([python, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def find_torch_python() -> tuple[str, dict | None, str]:
    """Returns (interpreter, environment for it, torch version)."""
    explicit = os.environ.get("SIMPLESCOPE_TORCH_PYTHON")
    if explicit:
        info = _probe(explicit, _clean_env())
        if info is None:
            raise BuildError(f"SIMPLESCOPE_TORCH_PYTHON={explicit} cannot `import torch`; point it at a Python "
                             "interpreter that has PyTorch installed")
        return explicit, _clean_env(), info["torch"]
    tried = []
    candidates = [(sys.executable, None, "the build interpreter"),
                  (sys.executable, _clean_env(), "the build interpreter outside build isolation")]
    candidates += [(p, _clean_env(), "a parent process's interpreter") for p in _ancestor_pythons()]
    seen = set()
    for python, env, what in candidates:
        key = (python, env is None)
        if key in seen:
            continue
        seen.add(key)
        tried.append(f"{python} ({what})")
        info = _probe(python, env)
        if info is not None:
            _log(f"using torch {info['torch']} from {python} ({what})")
            return python, env, info["torch"]
    raise BuildError(
        "building simplescope needs PyTorch (its C++ headers) to compile the libtorch shim, but no Python "
        "interpreter that can `import torch` was found. Tried:\n  " + "\n  ".join(tried) + "\n"
        "Install torch into the environment you install simplescope into (e.g. `pip install torch`), then "
        "either run `pip install --no-build-isolation .`, or set SIMPLESCOPE_TORCH_PYTHON to the path of a "
        "Python interpreter that has torch (the one that will use simplescope).")


def _run(cmd, cwd=None, env=None, what=""):
    _log(" ".join(cmd))
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(f"{what} failed (exit {res.returncode}):\n{' '.join(cmd)}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def _digest(paths, extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        with open(p, "rb") as f:
            h.update(p.encode() + b"\0" + f.read())
    return h.hexdigest()


def _copy_go_tree(root: str, dst: str) -> list[str]:
    """Copies go.mod, go.sum and the Go packages (no tests, no testdata) to dst; returns the files."""
    files = []
    for name in ("go.mod", "go.sum"):
        files.append(name)
    for top in ("capi", "core", "internal"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames[:] = sorted(d for d in dirnames if d != "testdata" and not d.startswith((".", "_")))
            for fn in sorted(filenames):
                if fn.endswith("_test.go") or not fn.endswith((".go", ".h", ".c", ".cpp", ".s")):
                    continue
                files.append(os.path.relpath(os.path.join(dirpath, fn), root))
    for rel in files:
        src, out = os.path.join(root, rel), os.path.join(dst, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copy2(src, out)
    return files


def build(root: str, out_dir: str, work_dir: str) -> None:
    """Builds the shim and the Go library from the source tree `root` into out_dir, using
    work_dir (kept between builds, so an unchanged shim is not recompiled)."""
    root, out_dir, work_dir = (os.path.abspath(p) for p in (root, out_dir, work_dir))
    go = shutil.which(os.environ.get("GO") or "go")
    if not go:
        raise BuildError("building simplescope needs the Go toolchain (go 1.26+) on PATH, or $GO set to it; "
                         "see https://go.dev/dl/")
    python, env, torch_version = find_torch_python()
    csrc = os.path.join(root, "core", "torch", "csrc")
    shimbuild = os.path.join(root, "python", "simplescope", "_shimbuild.py")

    # The Go sources go to a private copy whose build/lib holds the shim: the cgo directives in
    # core/torch link -L${SRCDIR}/../../build/lib, and the repo's own build/lib stays untouched.
    src = os.path.join(work_dir, "src")
    if os.path.isdir(src):
        shutil.rmtree(src)
    _copy_go_tree(root, src)
    lib = os.path.join(src, "build", "lib")
    os.makedirs(lib, exist_ok=True)

    # The shim: reuse the cached build when its sources, the torch and the interpreter are unchanged.
    shim_cache = os.path.join(work_dir, "shim")
    cached = os.path.join(shim_cache, SHIM)
    key = _digest([os.path.join(csrc, "shim.cpp"), os.path.join(csrc, "shim.h"), shimbuild],
                  f"{python}\0{torch_version}\0{os.environ.get('CXX', '')}")
    key_file = cached + ".key"
    if not (os.path.exists(cached) and os.path.exists(key_file) and open(key_file).read() == key):
        _run([python, shimbuild, csrc, cached], env=env, what="building the libtorch shim")
        with open(key_file, "w") as f:
            f.write(key)
    else:
        _log(f"shim unchanged, reusing {cached}")
    for name in (SHIM, SHIM + ".torch-version"):
        shutil.copy2(os.path.join(shim_cache, name), os.path.join(lib, name))

    # The Go library. $ORIGIN lets a C program find the shim beside it; Python preloads it anyway.
    genv = dict(os.environ)
    genv["CGO_ENABLED"] = "1"
    genv["CGO_LDFLAGS"] = (genv.get("CGO_LDFLAGS", "") + " -Wl,-rpath,$ORIGIN").strip()
    golib = os.path.join(lib, GOLIB)
    _run([go, "build", "-buildmode=c-shared", "-trimpath", "-o", golib, "./capi"], cwd=src, env=genv,
         what="go build -buildmode=c-shared ./capi")

    os.makedirs(os.path.join(out_dir, "csrc"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "include"), exist_ok=True)
    for name in (GOLIB, SHIM, SHIM + ".torch-version"):
        shutil.copy2(os.path.join(lib, name), os.path.join(out_dir, name))
    for name in ("shim.cpp", "shim.h"):
        shutil.copy2(os.path.join(csrc, name), os.path.join(out_dir, "csrc", name))
    shutil.copy2(os.path.join(root, "capi", "simplescope.h"), os.path.join(out_dir, "include", "simplescope.h"))
    _log(f"native libraries for torch {torch_version} in {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        build(*sys.argv[1:])
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
