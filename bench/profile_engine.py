"""Where simplescope's time goes: runs model.evaluate under torch.profiler. The Go core calls ATen
through the shim inside this process's libtorch, so the profiler's dispatcher hooks see every op.

  PYTHONPATH=python .venv/bin/python bench/profile_engine.py MODEL_DIR [--docs 24] [--threads 2]
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import simplescope as ss  # noqa: E402
from simplescope import _native  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--docs", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpus", "sample.jsonl.zst"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = ss.load(a.model)
    texts = _native.lib().call(None, "load_data", {"path": os.path.abspath(a.corpus), "preset": "seed"})["texts"][: a.docs]
    m.evaluate(texts[:2], progress=False)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        m.evaluate(texts, progress=False)
        sec = time.perf_counter() - t0
    print(f"{a.docs} documents x {m.n_layers} layers x 3 methods in {sec:.2f} s")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
