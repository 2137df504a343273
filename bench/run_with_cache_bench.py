"""run_with_cache: tensors without copies vs the msgpack path vs HF, side by side (issue 12).

    python bench/run_with_cache_bench.py [--config small] [--tokens 1000] [--reps 5] [--threads 2]

One prompt of --tokens random token ids on a random GPT-J (bench/make_model.py --config, made if
missing), every layer cached, three ways:

  old  the msgpack path: the same Go forward pass, results encoded as msgpack bin
       ({"dtype", "shape", "data"}; the request flag "arrays": true keeps that encoding) and decoded
       by the Python code run_with_cache used before DLPack (copied below verbatim: np.frombuffer,
       then torch.from_numpy(a.copy()));
  new  model.run_with_cache: the core's own tensors handed over by DLPack (no copy);
  hf   HF transformers GPTJForCausalLM(input_ids, output_hidden_states=True), float32, no_grad
       (its weights paged in before measuring: from_pretrained may leave them mapped from the file).

Each way runs in two subprocesses of its own (one libtorch, fresh allocators). Time: load, one
warm-up call, then --reps timed calls (median and min of the wall time, median process CPU time).
Memory: load, hand freed heap memory back to the OS (malloc_trim), reset the peak RSS (writing 5 to
/proc/self/clear_refs resets VmHWM), one call, then

  peak     VmHWM after the call - VmRSS before it: the most memory the call needed at once,
           result included;
  result   VmRSS with the result still held (after gc and malloc_trim) - VmRSS before: what
           keeping the result costs, plus whatever the call's allocators kept.

(ru_maxrss cannot be reset, so the model load's peak would hide the call's; VmHWM can. A process
of its own per measurement keeps one way's freed memory from being counted, or reused, by another.)
Timing is for the record, not a test: the machine may be shared.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def default_cache():
    return os.environ.get("SIMPLESCOPE_BENCH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "simplescope-bench")


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def trim():
    """Hands freed heap memory back to the OS (glibc malloc_trim), so that VmRSS before a call does
    not count memory earlier calls freed and the call would reuse."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def old_decode(out):
    """run_with_cache's Python side before DLPack (python/simplescope/model.py at 0f19c2b)."""
    import torch
    from simplescope import _native
    logits = _native.array(out["logits"])
    cache = {k: _native.array(v) for k, v in out["cache"].items()}
    logits = torch.from_numpy(logits.copy())
    cache = {k: torch.from_numpy(v.copy()) for k, v in cache.items()}
    return logits, cache


def worker(job):
    import gc

    import numpy as np
    import torch
    torch.set_num_threads(job["threads"])
    ids = np.random.default_rng(0).integers(0, 50000, job["tokens"]).tolist()
    split = []  # (ss_call s, Python decode s) per call of the simplescope ways
    if job["way"] == "hf":
        from transformers import GPTJForCausalLM
        hf = GPTJForCausalLM.from_pretrained(job["model"], dtype=torch.float32).eval()
        with torch.no_grad():  # page in weights that may still be mapped from the file
            for t in [*hf.parameters(), *hf.buffers()]:
                t.float().sum()
        x = torch.tensor([ids])

        def run():
            with torch.no_grad():
                o = hf(input_ids=x, output_hidden_states=True, use_cache=False)
            return o.logits, o.hidden_states
    else:
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import simplescope as ss
        from simplescope import _tensors
        m = ss.load(job["model"], device="cpu", dtype="float32")
        if job["way"] == "old":
            req, decode = {"tokens": [ids], "arrays": True}, old_decode
        else:  # what model.run_with_cache does, in two timed steps
            req, decode = {"tokens": [ids]}, _tensors.decode_tensors

        def run():
            t0 = time.perf_counter()
            out = m._call("run_with_cache", req)
            t1 = time.perf_counter()
            out = decode(out)
            split.append((t1 - t0, time.perf_counter() - t1))
            return (out["logits"], out["cache"]) if isinstance(out, dict) else out
    if job["mode"] == "memory":  # a fresh process: one call, nothing freed before it
        gc.collect()
        trim()
        before = status_kb("VmRSS")
        reset_peak()
        res = run()
        peak = status_kb("VmHWM")
        gc.collect()
        trim()
        held = status_kb("VmRSS")
        nbytes = sum(t.numel() * t.element_size() for t in [res[0], *(res[1].values() if isinstance(res[1], dict) else res[1])])
        out = {"peak_mib": (peak - before) / 1024, "result_mib": (held - before) / 1024,
               "result_tensor_mib": nbytes / 2**20, "n_cache": len(res[1]), "logits_shape": list(res[0].shape)}
    else:
        run()  # warm-up (its result is dropped at once)
        times, cpu = [], []
        split.clear()
        for _ in range(job["reps"]):
            t0, c0 = time.perf_counter(), time.process_time()
            res = run()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            del res
            gc.collect()
        calls = [c for c, _ in split]
        decodes = [d for _, d in split]
        out = {"median_s": statistics.median(times), "min_s": min(times), "cpu_s": statistics.median(cpu),
               "call_s": statistics.median(calls) if calls else None,
               "decode_s": statistics.median(decodes) if decodes else None}
    with open(job["out"], "w") as f:
        json.dump(out, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--model", help="model folder (default: the bench cache's CONFIG-seed0, made if missing)")
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ways", default="old,new,hf")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        with open(a.worker) as f:
            return worker(json.load(f))
    model = a.model or os.path.join(default_cache(), f"{a.config}-seed0")
    if not os.path.exists(os.path.join(model, ".complete")):
        subprocess.run([sys.executable, os.path.join(HERE, "make_model.py"), "--config", a.config, "--out", model], check=True)
    rows = []
    env = dict(os.environ)
    env.setdefault("SIMPLESCOPE_LIB_DIR", os.path.join(ROOT, "build", "lib"))
    for way in a.ways.split(","):
        row = {"way": way}
        for mode in ("time", "memory"):
            with tempfile.TemporaryDirectory() as td:
                jf, of = os.path.join(td, "job.json"), os.path.join(td, "out.json")
                with open(jf, "w") as f:
                    json.dump({"way": way, "mode": mode, "model": model, "tokens": a.tokens, "reps": a.reps,
                               "threads": a.threads, "out": of}, f)
                subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", jf], check=True, env=env)
                with open(of) as f:
                    row.update(json.load(f))
        rows.append(row)
    print(f"run_with_cache, {a.config} model ({model}), {a.tokens} tokens, every layer cached, "
          f"{a.threads} threads, {a.reps} reps")
    print(f"{'way':<5} {'median s':>9} {'min s':>8} {'CPU s':>7} {'call s':>7} {'decode s':>9} "
          f"{'peak MiB':>9} {'result MiB':>11} {'tensors MiB':>12}")
    na = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in rows:
        print(f"{r['way']:<5} {r['median_s']:>9.3f} {r['min_s']:>8.3f} {r['cpu_s']:>7.2f} {na(r['call_s']):>7} "
              f"{na(r['decode_s']):>9} {r['peak_mib']:>9.1f} {r['result_mib']:>11.1f} {r['result_tensor_mib']:>12.1f}")
    print("median/min s: wall time of a call (result as torch tensors in Python); CPU s: process CPU "
          "time per call, all threads;\ncall s: ss_call (forward pass + result encoding + transfer); decode "
          "s: Python side (old: numpy copies; new: DLPack export);\npeak MiB: VmHWM during one call over "
          "VmRSS before it; result MiB: VmRSS growth while the result is held; tensors MiB: the result's "
          "bytes.")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
