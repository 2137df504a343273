"""The side-by-side at full size on a GPU: a random GPT-J 6B (n_embd 4096, n_layer 28, n_head 16,
rotary_dim 64, vocab 50400) made in float16 directly on CUDA by make_model.py and saved as
safetensors, 698 seed-preset documents x 28 layers x 3 methods for simplescope (c), the
TransformerLens loop (a) and the paper's batched hooks (b) on a subset of documents (items/s is
comparable across sizes, so (c)/(a) and (c)/(b) extrapolate to the full run). Everything else is
side_by_side.py's (metric agreement on the subset, FLOP floor against the measured float16 matmul
rate).

  bench/.venv-tl/bin/python bench/gpu_side_by_side.py                 # on a machine with CUDA
  bench/.venv-tl/bin/python bench/gpu_side_by_side.py --tiny          # CPU dry run of the same logic
Extra arguments are passed to side_by_side.py (e.g. --docs-ab 8 --tl-limit-s 300).

This needs bench/.venv-tl (TransformerLens) and `make build` on the GPU machine; on a bare GPU
machine (torch and transformers only) run bench/gpu_check.py instead (README, "Checking a GPU
machine"), which checks everything here but the TransformerLens loop.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side  # noqa: E402

FULL = ["--config", "gptj6b", "--device", "cuda", "--dtype", "float16", "--docs-c", "698",
        "--docs-ab", "4", "--tl-limit-s", "300", "--tol", "2e-2"]
# The same code path on the CPU with the tiny random model (a dry run without a GPU).
TINY = ["--config", "tiny", "--device", "cpu", "--dtype", "float32", "--docs-c", "24", "--docs-ab", "2"]


def main(argv):
    tiny = "--tiny" in argv
    rest = [x for x in argv if x != "--tiny"]
    return side_by_side.main((TINY if tiny else FULL) + rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
