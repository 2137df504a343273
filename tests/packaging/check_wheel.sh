#!/usr/bin/env bash
# Builds simplescope's wheel and checks it where a user would install it: a fresh venv that has
# torch but no Go toolchain and no source checkout, run from outside the repo.
#
#   tests/packaging/check_wheel.sh            (or `make wheel-check`)
#
# Steps:
#   1. `python -m build --wheel` (isolated build: pip's build env lacks torch, so this also checks
#      that the build finds the calling venv's torch); CHECK_WHEEL_NO_ISOLATION=1 adds --no-isolation.
#   2. A fresh venv. Torch and the package's runtime dependencies come from the project venv:
#      a folder of symlinks to exactly the distributions in the dependency closure of
#      simplescope's requirements (torch, numpy, msgpack, tqdm, matplotlib, pandas and theirs),
#      added with a .pth file. Reinstalling torch 2.11 (+CUDA wheels, ~3 GB, nothing in the pip
#      cache here) would take minutes and need the network; the symlinks take < 1 s and `pip check`
#      still sees real metadata.
#   3. `pip install --no-deps --no-index` of the wheel, then `pip check`.
#   4. From a temporary directory, PATH without Go, SIMPLESCOPE_LIB_DIR unset: backend_info() must
#      report libraries in the venv's simplescope/_lib, and a tiny random GPT-J (made here with
#      HF transformers in the project venv) must give HF's logits through the Go library.
#   5. The shim-rebuild path: the installed .torch-version stamp is faked and XDG_CACHE_HOME points
#      at a fresh folder; the import must rebuild the shim from _lib/csrc into that cache, and the
#      same forward pass must still match.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${SIMPLESCOPE_PYTHON:-$ROOT/.venv/bin/python}"
unset SIMPLESCOPE_LIB_DIR SIMPLESCOPE_TORCH_PYTHON PYTHONPATH
WORK="$(mktemp -d "${TMPDIR:-/tmp}/simplescope-wheel-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
t0=$SECONDS
step() { echo "== [$((SECONDS - t0))s] $*"; }

step "building the wheel with $PY"
iso=()
[[ "${CHECK_WHEEL_NO_ISOLATION:-0}" == 1 ]] && iso=(--no-isolation)
"$PY" -m build --wheel "${iso[@]}" --outdir "$WORK/dist" "$ROOT" > "$WORK/build.log" 2>&1 || {
  tail -40 "$WORK/build.log"; echo "FAIL: wheel build"; exit 1; }
grep "simplescope build:" "$WORK/build.log" || true
WHEEL="$(ls "$WORK"/dist/simplescope-*.whl)"
echo "wheel: $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"
case "$(basename "$WHEEL")" in
  *-py3-none-linux_x86_64.whl) ;;
  *) echo "FAIL: wheel tag is not py3-none-linux_x86_64"; exit 1 ;;
esac
"$PY" - "$WHEEL" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["simplescope/_lib/libsimplescope.so", "simplescope/_lib/libsimplescope_shim.so",
        "simplescope/_lib/libsimplescope_shim.so.torch-version", "simplescope/_lib/csrc/shim.cpp",
        "simplescope/_lib/csrc/shim.h", "simplescope/data/demo.jsonl.zst", "simplescope/__init__.py"]
missing = [n for n in need if n not in names]
if missing:
    sys.exit(f"FAIL: wheel lacks {missing}")
print(f"wheel has {len(names)} files including {', '.join(n.split('/')[-1] for n in need)}")
EOF

step "fresh venv with torch and deps linked from the project venv"
"$PY" -m venv --without-pip "$WORK/venv"
VPY="$WORK/venv/bin/python"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PY" - "$WORK/deps" torch numpy msgpack tqdm matplotlib pandas <<'EOF'
# Symlinks every file tree of the distributions in the requirement closure of the given names.
import os, re, sys
from importlib import metadata
out, todo, done = sys.argv[1], list(sys.argv[2:]), set()
os.makedirs(out)
while todo:
    name = re.split(r"[ ;<>=!~\[(]", todo.pop(), 1)[0].strip().lower().replace("_", "-")
    if not name or name in done:
        continue
    done.add(name)
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue  # an optional or platform-conditional requirement that is not installed
    for req in dist.requires or []:
        if "extra ==" not in req:
            todo.append(req)
    tops = {f.parts[0] for f in dist.files or [] if not f.parts[0].startswith("..")}
    for top in tops:
        src = os.path.join(str(dist.locate_file("")), top)
        dst = os.path.join(out, top)
        if os.path.exists(src) and not os.path.lexists(dst) and top != "__pycache__":
            os.symlink(src, dst)
print(f"linked {len(done)} distributions: {', '.join(sorted(done))}")
EOF
echo "$WORK/deps" > "$SITE/simplescope-check-deps.pth"

step "installing the wheel (--no-deps --no-index)"
"$PY" -m pip --python "$VPY" install --quiet --no-deps --no-index "$WHEEL"
"$PY" -m pip --python "$VPY" check

step "tiny random GPT-J and HF reference logits (project venv)"
"$PY" - "$WORK/model" <<'EOF'
import os, sys
import numpy as np, torch
from transformers import GPTJConfig, GPTJForCausalLM
out = sys.argv[1]
cfg = GPTJConfig(vocab_size=96, n_positions=64, n_embd=32, n_layer=2, n_head=4, rotary_dim=4,
                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=False,
                 bos_token_id=0, eos_token_id=0)
torch.manual_seed(0)
model = GPTJForCausalLM(cfg).eval()
with torch.no_grad():
    for p in model.parameters():  # larger than HF's init so that the blocks matter
        p.add_(0.3 * torch.randn_like(p))
    tokens = torch.tensor([[5, 17, 3, 88, 42, 0, 61]])
    logits = model(tokens).logits.float().numpy()
model.save_pretrained(out, safe_serialization=True)
np.save(os.path.join(out, "ref_tokens.npy"), tokens.numpy())
np.save(os.path.join(out, "ref_logits.npy"), logits)
print(f"model in {out}; reference logits {logits.shape}")
EOF

cat > "$WORK/use.py" <<'EOF'
import os, sys
import numpy as np
import simplescope as ss
model_dir, want_shim_dir = sys.argv[1], sys.argv[2]
pkg = os.path.dirname(ss.__file__)
info = ss.backend_info()
print({k: info[k] for k in ("version", "torch_version", "python_torch_version", "library", "shim")})
lib_dir = os.path.join(pkg, "_lib")
if os.path.dirname(info["library"]) != lib_dir:
    sys.exit(f"FAIL: Go library loaded from {info['library']}, want {lib_dir}")
if os.path.dirname(os.path.abspath(info["shim"])) != os.path.abspath(want_shim_dir):
    sys.exit(f"FAIL: shim loaded from {info['shim']}, want one in {want_shim_dir}")
if not os.path.exists(os.path.join(pkg, "data", "demo.jsonl.zst")):
    sys.exit("FAIL: data/demo.jsonl.zst not installed")
tokens = np.load(os.path.join(model_dir, "ref_tokens.npy"))
ref = np.load(os.path.join(model_dir, "ref_logits.npy"))
with ss.load(model_dir, device="cpu", dtype="float32") as m:
    logits, cache = m.run_with_cache(tokens, return_type="numpy")
if logits.shape != ref.shape:
    sys.exit(f"FAIL: logits shape {logits.shape}, HF {ref.shape}")
diff = np.abs(logits - ref)
i = np.unravel_index(np.argmax(diff), diff.shape)
print(f"logits vs HF: max |diff| {diff.max():.3g} at {tuple(int(x) for x in i)} "
      f"(ours {logits[i]:.6f}, HF {ref[i]:.6f}); resid_post keys {len(cache.keys()) if hasattr(cache, 'keys') else '?'}")
if not diff.max() < 1e-4:
    sys.exit("FAIL: logits differ from HF")
print("OK")
EOF
mkdir -p "$WORK/run"
# No Go on PATH, nothing from the repo, caches in the work dir.
RUN_ENV=(env -u SIMPLESCOPE_LIB_DIR -u PYTHONPATH "PATH=$WORK/venv/bin:/usr/bin:/bin" "HOME=$WORK/home")
if "${RUN_ENV[@]}" bash -c 'command -v go' >/dev/null; then echo "FAIL: go still on PATH"; exit 1; fi

step "import and forward pass from the installed wheel (no Go toolchain)"
(cd "$WORK/run" && "${RUN_ENV[@]}" "XDG_CACHE_HOME=$WORK/cache1" "$VPY" "$WORK/use.py" "$WORK/model" "$SITE/simplescope/_lib")
if [[ -e "$WORK/cache1/simplescope" ]]; then echo "FAIL: the matching shipped shim was rebuilt"; exit 1; fi

step "shim rebuild for a mismatching torch stamp"
TV="$("$VPY" -c 'import torch; print(torch.__version__)')"
echo "0.0.0+not-this-torch" > "$SITE/simplescope/_lib/libsimplescope_shim.so.torch-version"
(cd "$WORK/run" && "${RUN_ENV[@]}" "XDG_CACHE_HOME=$WORK/cache2" "$VPY" "$WORK/use.py" "$WORK/model" "$WORK/cache2/simplescope/$TV")
ls -l "$WORK/cache2/simplescope/$TV"

step "all wheel checks passed"
