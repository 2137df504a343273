"""ss.from_hf vs ss.load of the same checkpoint: time and memory, side by side (issue 12).

    python bench/from_hf_bench.py [--config small] [--reps 3]

Each measurement runs in a subprocess of its own (one libtorch, fresh allocators):

  load     ss.load(DIR): the Go core reads the safetensors file and makes its own tensors;
  from_hf  HF GPTJForCausalLM.from_pretrained(DIR) first (its weights paged in and not counted),
           then ss.from_hf(hf_model): simplescope uses the HF parameters' storage.

Reported: the median wall time of the step, and the RSS it adds (VmRSS after - before, after
malloc_trim), against the checkpoint's parameter bytes. from_hf should add next to nothing (the
weights are shared); load adds one copy of the weights.
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def trim():
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def worker(way, path):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import torch
    import simplescope as ss
    torch.set_num_threads(2)
    hf = None
    if way == "from_hf":
        from transformers import GPTJForCausalLM
        hf = GPTJForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        with torch.no_grad():
            sum(float(p.sum()) for p in hf.parameters())  # page the weights in
    n_bytes = sum(p.numel() * p.element_size() for p in (hf.parameters() if hf is not None else []))
    trim()
    before = rss_mib()
    t0 = time.perf_counter()
    model = ss.from_hf(hf) if way == "from_hf" else ss.load(path)
    seconds = time.perf_counter() - t0
    trim()
    added = rss_mib() - before
    logits, _ = model.run_with_cache([[1, 2, 3]], names_filter=[])  # the model works
    print(json.dumps({"seconds": seconds, "added_mib": added, "param_mib": n_bytes / 2 ** 20,
                      "logit0": float(logits[0, -1, 0])}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(*a.worker)
    sys.path.insert(0, HERE)
    import make_model
    cache = os.environ.get("SIMPLESCOPE_BENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "simplescope-bench")
    path = make_model.make(a.config, os.path.join(cache, a.config))
    rows = {}
    for way in ("load", "from_hf"):
        runs = []
        for _ in range(a.reps):
            out = subprocess.run([sys.executable, __file__, "--worker", way, path], check=True,
                                 capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        rows[way] = runs
    params = rows["from_hf"][0]["param_mib"]
    print(f"model {a.config}: {params:.0f} MiB of float32 parameters; median of {a.reps} runs, a process each")
    for way, runs in rows.items():
        print(f"  {way:8s} {statistics.median(r['seconds'] for r in runs):7.3f} s, "
              f"RSS added {statistics.median(r['added_mib'] for r in runs):7.1f} MiB")
    same = len({round(r["logit0"], 5) for runs in rows.values() for r in runs}) == 1
    print(f"  the same logits from both: {same}")


if __name__ == "__main__":
    main()
