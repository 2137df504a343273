#!/usr/bin/env bash
# Creates bench/.venv-tl: a separate venv for bench/side_by_side.py with TransformerLens 2.x (the
# HookedTransformer API of the published run; 3.x/4.x removed it, and 2.x wants transformers 4.x), the same
# torch as the project venv (torch==2.11.0) and what simplescope's Python package needs.
# It never touches the project's .venv. Usage: bash bench/setup_bench_env.sh [python3]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-python3}"
venv="$here/.venv-tl"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# CPU wheel index is not reachable here; torch==2.11.0 from PyPI matches the project venv.
"$venv/bin/python" -m pip install --quiet "torch==2.11.0"
"$venv/bin/python" -m pip install --quiet "transformer_lens<3" "datasets<4" "pyarrow<19" safetensors msgpack numpy tqdm pandas matplotlib
"$venv/bin/python" - <<'PY'
import torch, transformers, transformer_lens, importlib.metadata as md
print("bench/.venv-tl ready: torch", torch.__version__, "transformers", transformers.__version__,
      "transformer_lens", md.version("transformer_lens"))
PY
