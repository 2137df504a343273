"""One-shot GPU check of simplescope (issue 16): correct and fast on the GPU.

Runs on a bare GPU machine with only torch and transformers installed (no Go, no network, no
TransformerLens): it uses the native libraries in build/lib (built elsewhere with `make build`
and copied along) and the repository's python/ folder. msgpack is not needed: a small pure-Python
stand-in (bench/_mini_msgpack.py) replaces it when it is missing.

It makes a random full-size GPT-J 6B (bench/make_model.py's gptj6b shape: n_embd 4096, 28 blocks,
16 heads, rotary_dim 64, vocabulary 50 400) in float16 directly on the GPU — nothing is
downloaded; the tokenizer files come from the package — saves it as safetensors in a temporary
folder, loads it with simplescope, and reports:

  1. HF parity on the GPU in float16 and bfloat16: simplescope's and HF's logits (eager
     attention) against HF in float32 on the same weights; simplescope must stay within twice
     HF's own error in that dtype. Attention through at::scaled_dot_product_attention (the CUDA
     default) and through the explicit float32 softmax are both checked.
  2. The seed experiment: 698 documents of the bundled corpus's seed preset x 28 layers x 3
     methods (logitlens, patchscope, simplescope), in seconds, and as a fraction of the minimal
     FLOP count (bench/side_by_side.py) at the measured matmul rate; no host<->device transfer
     inside a block loop (the shim's counters).
  3. deterministic=True: two runs bit-for-bit equal.
  4. The paper's batched HF forward hooks (side_by_side.run_paper) on a subsample: the speed
     ratio and the metrics' agreement.
  5. Out-of-memory halve-and-retry under torch.cuda.set_per_process_memory_fraction: a patch
     whose batch cannot fit is halved and retried with the same results, and evaluate's batch
     budget follows the fraction.
  6. patch and generate throughput.
  7. Several GPUs (when there are): a model on every GPU gives one GPU's results.

Usage, from the repository root (README: "Checking a GPU machine"):

  python bench/gpu_check.py                            # full size, cuda:0, <= 8 min on one H200
  python bench/gpu_check.py --config tiny --device cpu # a dry run of the same code (make test)

Exit status 0 when every check passes; --json FILE writes the numbers.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
METHODS = ("logitlens", "patchscope", "simplescope")
PATCHSCOPE_PROMPT = "cat -> cat\n1135 -> 1135\nhello -> hello\n?"
GIB = 1 << 30


def setup():
    """The repository's python/ and bench/ on sys.path, the libraries from build/lib, no
    network, and msgpack's stand-in when the package is missing."""
    sys.path.insert(0, os.path.join(ROOT, "python"))
    sys.path.insert(0, HERE)
    os.environ.setdefault("SIMPLESCOPE_LIB_DIR", os.path.join(ROOT, "build", "lib"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import msgpack  # noqa: F401
    except ImportError:
        import _mini_msgpack
        sys.modules["msgpack"] = _mini_msgpack


class Report:
    """Prints each result as it comes (flushed, so a cut-off run still shows what it did) and
    keeps them for --json; counts failed checks."""

    def __init__(self, limit_s):
        self.t0 = time.perf_counter()
        self.limit_s = limit_s
        self.data = {}
        self.failed = []

    def elapsed(self):
        return time.perf_counter() - self.t0

    def left(self):
        return self.limit_s - self.elapsed()

    def section(self, title):
        print(f"\n== {title}  [{self.elapsed():.0f} s]", flush=True)

    def line(self, text):
        print("   " + text, flush=True)

    def put(self, key, value):
        self.data[key] = value

    def check(self, name, ok, detail=""):
        print(f"   [{'ok' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""), flush=True)
        self.data.setdefault("checks", {})[name] = {"ok": bool(ok), "detail": detail}
        if not ok:
            self.failed.append(name)


# ------------------------------------------------------------------------------ shim access
class Shim:
    """The shim's C functions this script reads (the same process's libsimplescope_shim.so)."""

    def __init__(self, native):
        self.lib = native.lib().shim
        i64, p64 = ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)
        self.lib.sst_transfer_counts.argtypes = [p64, p64, p64, p64]
        self.lib.sst_transfer_counts.restype = ctypes.c_void_p
        self.lib.sst_set_sdpa.argtypes = [ctypes.c_int]
        self.lib.sst_set_sdpa.restype = ctypes.c_int
        self.lib.sst_debug_oom_rows.argtypes = [i64, p64]
        self.lib.sst_debug_oom_rows.restype = None
        self.lib.sst_cuda_memory.argtypes = [i64, p64, p64, p64, p64, ctypes.POINTER(ctypes.c_double)]
        self.lib.sst_cuda_memory.restype = ctypes.c_void_p
        self.lib.sst_cuda_memory_fraction_known.restype = ctypes.c_int

    def transfers(self):
        v = [ctypes.c_int64() for _ in range(4)]
        self.lib.sst_transfer_counts(*[ctypes.byref(x) for x in v])
        return dict(zip(("uploads", "syncs", "hot_uploads", "hot_syncs"), (x.value for x in v)))

    def set_sdpa(self, mode):
        return self.lib.sst_set_sdpa(mode)

    def inject_oom(self, rows):
        n = ctypes.c_int64()
        self.lib.sst_debug_oom_rows(rows, ctypes.byref(n))
        return n.value

    def cuda_memory(self, index):
        v = [ctypes.c_int64() for _ in range(4)]
        frac = ctypes.c_double()
        err = self.lib.sst_cuda_memory(index, *[ctypes.byref(x) for x in v], ctypes.byref(frac))
        if err:
            return None
        return dict(zip(("driver_free", "total", "allocated", "reserved"), (x.value for x in v)), fraction=frac.value)


def eager(hf):
    """HF's eager attention (float32 scores, as the paper's code ran)."""
    if hasattr(hf, "set_attn_implementation"):
        hf.set_attn_implementation("eager")
    else:
        hf.config._attn_implementation = "eager"


def diff(a, b):
    return (a.float() - b.float()).abs().max().item()


def budget(mem, fraction):
    """core/batch.Budget in Python: fraction x total - allocated, at most driver-free + cached."""
    limit = int(fraction * mem["total"]) - mem["allocated"]
    return max(0, min(limit, mem["driver_free"] + max(0, mem["reserved"] - mem["allocated"])))


# ------------------------------------------------------------------------------ the checks
def parity(rep, shim, ss_model, hf, docs, dtype, device, sdpa_modes, length):
    """simplescope and HF (eager) in dtype against HF in float32 on the same weights (last
    position's and all positions' logits of a few documents)."""
    import torch
    dt = getattr(torch, dtype)
    ids = [d[:length] for d in docs]
    eager(hf)
    with torch.no_grad():
        hf_out = [hf(torch.tensor([x], device=device)).logits[0].float() for x in ids]
        if dtype != "float32":
            hf.float()  # float16/bfloat16 -> float32 and back is exact
            ref = [hf(torch.tensor([x], device=device)).logits[0].float() for x in ids]
            hf.to(dt)
        else:
            ref = hf_out
    hf_err = max(diff(h, r) for h, r in zip(hf_out, ref))
    ok_modes = {}
    for name, mode in sdpa_modes:
        prev = shim.set_sdpa(mode)
        try:
            ss_out = []
            for x in ids:
                logits, _ = ss_model.run_with_cache([x], names_filter=[])
                ss_out.append(logits[0].to(device))
        finally:
            shim.set_sdpa(prev)
        ss_err = max(diff(s, r) for s, r in zip(ss_out, ref))
        vs_hf = max(diff(s, h) for s, h in zip(ss_out, hf_out))
        top1 = sum(int((s.argmax(-1) == h.argmax(-1)).sum()) for s, h in zip(ss_out, hf_out)) / sum(len(x) for x in ids)
        bound = 2 * hf_err + (1e-4 if dtype == "float32" else 1e-3)
        ok = ss_err <= bound
        ok_modes[name] = ok
        rep.line(f"{dtype} attention {name:8s}: max |ss - HF fp32| {ss_err:.3g}, max |HF {dtype} - HF fp32| {hf_err:.3g}, "
                 f"max |ss - HF {dtype}| {vs_hf:.3g}, top-1 agreement with HF {top1:.4f}")
        rep.check(f"parity {dtype} {name} within 2x HF's own {dtype} error", ok, f"{ss_err:.3g} <= {bound:.3g}")
        rep.put(f"parity_{dtype}_{name}", {"ss_vs_ref": ss_err, "hf_vs_ref": hf_err, "ss_vs_hf": vs_hf, "top1_agreement": top1})
    # the patched continuation (a shared target prefix's K/V, one position through the remaining
    # blocks): a document's own last hidden state patched into it at two layers gives its logits
    L = ss_model.n_layers
    worst = 0.0
    for x, r in zip(ids[:2], ref[:2]):
        layers = [0, L // 2, L // 2]  # two rows of one start block: the prefix shared by a batch of 2
        vecs = ss_model.hidden_states([x] * 3, layer=layers, position=-1)
        out = ss_model.patch([x], vecs, layer=layers, position=-1, progress=False).logits.to(device)
        worst = max(worst, max(diff(out[i], r[-1]) for i in range(3)))
    bound = 2 * hf_err + (1e-4 if dtype == "float32" else 1e-3)
    rep.line(f"{dtype} patched continuation (shared prefix K/V, one position): max |ss - HF fp32| {worst:.3g}")
    rep.check(f"patched continuation {dtype} within 2x HF's own {dtype} error", worst <= bound, f"{worst:.3g} <= {bound:.3g}")
    return ok_modes


def seed_documents(native, model, corpus, n, context):
    got = native.lib().call(None, "load_data", {"path": corpus, "preset": "seed"})
    texts = got["texts"][:n]
    if len(texts) < n:
        raise SystemExit(f"seed preset on {corpus}: {len(texts)} documents, want {n}")
    return [t[: context - 1] for t in model.tokenize(texts)]  # room for BOS


def experiment(rep, shim, model, docs, targets, pos, cfg, device, dtype):
    import numpy as np
    import side_by_side
    L = cfg["n_layer"]
    model.evaluate(docs[:4], methods=METHODS, positions=pos[:4], progress=False)  # warm-up
    c0 = shim.transfers()
    t0 = time.perf_counter()
    res = model.evaluate(docs, methods=METHODS, positions=pos, progress=False)
    sec = time.perf_counter() - t0
    tr = {k: v - c0[k] for k, v in shim.transfers().items()}
    items = len(docs) * L * len(METHODS)
    st = res.meta["stats"]
    flops = side_by_side.minimal_flops(cfg, docs, pos, targets)
    rate = side_by_side.matmul_rate(device, dtype, n=8192 if device.startswith("cuda") else 1024)
    frac = flops / sec / rate
    rep.line(f"{len(docs)} documents x {L} layers x {len(METHODS)} methods = {items} items in {sec:.2f} s "
             f"({items / sec:.0f} items/s; the published TransformerLens run took about 2 hours on an A100)")
    rep.line(f"stats: {st['source_batches']} source batches ({st['source_tokens']} tokens, {st['source_seconds']:.2f} s), "
             f"{st['patch_batches']} continuation batches ({st['patched_rows']} rows, {st['patch_seconds']:.2f} s), "
             f"{st['oom_retries']} out-of-memory retries")
    rep.line(f"minimal FLOPs {flops / 1e12:.2f} TFLOP; {flops / sec / 1e12:.1f} TFLOP/s achieved; measured {dtype} matmul "
             f"{rate / 1e12:.1f} TFLOP/s; fraction {frac:.3f}")
    rep.line(f"transfers: {tr['uploads']} uploads, {tr['syncs']} syncs; inside block loops: {tr['hot_uploads']} uploads, "
             f"{tr['hot_syncs']} syncs")
    rep.check("no upload or sync inside a block loop", tr["hot_uploads"] == 0 and tr["hot_syncs"] == 0, str(tr))
    rep.check("every item decoded", all(np.isfinite(res.per_example(m)["surprisal"]).all() for m in METHODS))
    rep.put("experiment", {"docs": len(docs), "items": items, "seconds": sec, "items_per_s": items / sec, "stats": st,
                           "min_flops": flops, "matmul_flops_per_s": rate, "flop_fraction": frac, "transfers": tr})
    return res, sec


def deterministic(rep, model, docs, pos):
    import numpy as np
    a = model.evaluate(docs, methods=METHODS, positions=pos, progress=False, deterministic=True)
    b = model.evaluate(docs, methods=METHODS, positions=pos, progress=False, deterministic=True)
    same = all(np.array_equal(a.per_example(m)[k], b.per_example(m)[k], equal_nan=True)
               for m in METHODS for k in ("prec1", "surprisal", "paper_surprisal", "patched_top1"))
    rep.check(f"deterministic=True: two runs on {len(docs)} documents bit-for-bit equal", same)


def paper_baseline(rep, hf, res, docs, targets, pos, L, sec_ss, device, dtype, tol):
    import numpy as np
    import side_by_side
    eager(hf)
    batch = 256 if device.startswith("cuda") else 16
    side_by_side.run_paper(hf, docs[:1], targets, pos, L, batch=batch)  # warm-up
    r, n, s = side_by_side.run_paper(hf, docs, targets, pos, L, batch=batch)
    ips_paper = n / s
    ips_ss = len(res.per_example(METHODS[0])["prec1"]) * L * len(METHODS) / sec_ss
    rep.line(f"paper's batched HF hooks: {n} items ({len(docs)} documents) in {s:.2f} s ({ips_paper:.1f} items/s); "
             f"simplescope {ips_ss:.0f} items/s: {ips_ss / ips_paper:.1f}x")
    k = len(docs)
    worst = {}
    for m in METHODS:
        ex = res.per_example(m)
        for f in ("prec1", "surprisal", "paper_surprisal"):
            a, b = np.asarray(r[m][f], dtype=np.float64), np.asarray(ex[f][:k], dtype=np.float64)
            worst[f"{m}.{f}"] = float(np.nanmax(np.abs(np.nanmean(a, 0) - np.nanmean(b, 0))))
    prec_ok = all(v <= 1.0 / k + 1e-9 for key, v in worst.items() if key.endswith("prec1"))
    surp_ok = all(v <= tol for key, v in worst.items() if not key.endswith("prec1"))
    rep.line("largest per-layer mean differences, paper vs simplescope: " +
             ", ".join(f"{key} {v:.2g}" for key, v in worst.items()))
    rep.check(f"paper's hooks and simplescope agree (prec1 within one document, surprisals within {tol})",
              prec_ok and surp_ok)
    rep.put("paper", {"items": n, "seconds": s, "items_per_s": ips_paper, "ss_speedup": ips_ss / ips_paper,
                      "max_mean_diff": worst})


def oom_retry(rep, shim, model, docs, pos, cfg, device):
    """Logit lens over docs with every continuation in one batch (patch_rows = all of its rows):
    under a memory fraction that leaves room for about a quarter of that batch (on the CPU: the
    shim's injected out of memory above half of it), the batch that fails is halved and retried,
    and the results equal the unconstrained run's."""
    import numpy as np
    import torch
    L = cfg["n_layer"]
    rows = len(docs) * L  # the logit lens's one group: every (document, layer)
    kw = dict(methods=["logitlens"], positions=pos, progress=False, patch_rows=rows, chunk_prompts=len(docs))
    want = model.evaluate(docs, **kw)
    cuda = device.startswith("cuda")
    if cuda:
        idx = torch.device(device).index or 0
        torch.cuda.synchronize(idx)
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(idx).total_memory
        held = torch.cuda.memory_allocated(idx)
        per_row = cfg["vocab_size"] * 10  # float16 logits, float32 logits, float32 log-softmax
        frac = (held + per_row * rows // 4 + 512 * 2**20) / total
        torch.cuda.set_per_process_memory_fraction(frac, idx)
        mem = shim.cuda_memory(idx)
        rep.line(f"memory fraction {frac:.4f} of {total / GIB:.1f} GiB ({held / GIB:.2f} GiB held by tensors): "
                 f"budget {budget(mem, frac) / GIB:.2f} GiB for a {rows}-row batch of ~{per_row * rows / GIB:.1f} GiB"
                 if mem else "the shim cannot read the device's memory figures")
        if mem:
            rep.line("the shim reads the fraction from the allocator" if mem["fraction"] >= 0 else
                     "the shim cannot read the fraction (built without the CUDA headers): the Python binding "
                     "sends it with each request (memory_fraction)")
    else:
        n0 = shim.inject_oom(rows // 2)
    try:
        t0 = time.perf_counter()
        got = model.evaluate(docs, **kw)
        sec = time.perf_counter() - t0
    finally:
        if cuda:
            torch.cuda.set_per_process_memory_fraction(1.0, idx)
            torch.cuda.empty_cache()
        else:
            injected = shim.inject_oom(0) - n0
    st, st0 = got.meta["stats"], want.meta["stats"]
    a, b = want.per_example("logitlens"), got.per_example("logitlens")
    same_top1 = np.array_equal(a["patched_top1"], b["patched_top1"])
    d = float(np.nanmax(np.abs(a["surprisal"] - b["surprisal"])))
    how = "under the memory fraction" if cuda else "with out of memory injected above half the batch (CPU dry run)"
    rep.line(f"{how}: {st['patch_batches']} continuation batches (unconstrained {st0['patch_batches']}), "
             f"{st['oom_retries']} retries, {st['source_batches']} source batches (unconstrained {st0['source_batches']}), "
             f"{sec:.2f} s; max |surprisal difference| {d:.3g}")
    if not cuda:
        rep.line(f"{injected} failure(s) injected")
    rep.check("the batch that ran out of memory was halved and retried", st["oom_retries"] >= 1, str(st))
    rep.check("results after the retries equal the unconstrained ones", same_top1 and d < 1e-2)
    rep.put("oom", {"rows": rows, "stats": st, "unconstrained_stats": st0, "seconds": sec, "max_surprisal_diff": d})


def throughput(rep, model, cfg, n_patch, n_gen, new_tokens):
    import torch
    g = torch.Generator().manual_seed(1)
    dt = getattr(torch, model.config["dtype"])
    C, L = cfg["n_embd"], cfg["n_layer"]
    simple = model.tokenize("?", prepend_bos=True)
    paper = model.tokenize(PATCHSCOPE_PROMPT, prepend_bos=True)
    for name, target, position in (("one position (\"?\", last token)", simple, -1),
                                   ("tail (patchscope prompt, position 4)", paper, 4)):
        vecs = torch.randn(n_patch, C, generator=g).to(dt)
        layers = torch.randint(0, L, (n_patch,), generator=g).tolist()
        model.patch(target, vecs[:8], layer=layers[:8], position=position, progress=False)  # warm-up
        t0 = time.perf_counter()
        out = model.patch(target, vecs, layer=layers, position=position, progress=False)
        sec = time.perf_counter() - t0
        assert out.logits.shape == (n_patch, cfg["vocab_size"])
        rep.line(f"patch, {name}: {n_patch} rows in {sec:.2f} s, {n_patch / sec:.0f} rows/s "
                 f"(with the float32 logits back in Python)")
        rep.put(f"patch_rows_per_s {name}", n_patch / sec)
    vecs = torch.randn(n_gen, C, generator=g).to(dt)
    layers = torch.randint(0, L, (n_gen,), generator=g).tolist()
    targets = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "1, 2, 3, 4,"]
    rows = [targets[i % len(targets)] for i in range(n_gen)]
    t0 = time.perf_counter()
    out = model.generate(rows, vecs, layer=layers, max_new_tokens=new_tokens, progress=False)
    sec = time.perf_counter() - t0
    ntok = sum(len(t) for t in out.tokens)
    rep.line(f"generate: {n_gen} rows x up to {new_tokens} new tokens = {ntok} tokens in {sec:.2f} s, {ntok / sec:.0f} tokens/s")
    rep.put("generate_tokens_per_s", ntok / sec)


def replicas(rep, ss, path, devices, dtype, docs, pos, one):
    import numpy as np
    m = ss.load(path, device=devices, dtype=dtype)
    try:
        two = m.evaluate(docs, methods=METHODS, positions=pos, progress=False, chunk_prompts=max(1, len(docs) // 4),
                         deterministic=True)
    finally:
        m.close()
    same = all(np.array_equal(one.per_example(x)[k], two.per_example(x)[k], equal_nan=True)
               for x in METHODS for k in ("prec1", "surprisal", "patched_top1"))
    rep.check(f"a model on {devices} gives one device's results on {len(docs)} documents", same)


# ------------------------------------------------------------------------------ main
def main(argv=None):
    ap = argparse.ArgumentParser(description="simplescope on a GPU machine: parity, cost, OOM retry, throughput")
    ap.add_argument("--config", default="gptj6b", help="bench/make_model.py config (gptj6b, small, tiny)")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--docs", type=int, default=698, help="documents of the seed experiment")
    ap.add_argument("--docs-paper", type=int, default=8, help="documents for the paper's HF hooks baseline")
    ap.add_argument("--parity-docs", type=int, default=4, help="documents compared with HF")
    ap.add_argument("--parity-len", type=int, default=256, help="tokens of each document compared with HF")
    ap.add_argument("--corpus", default=os.path.join(ROOT, "testdata", "corpus", "sample.jsonl.zst"))
    ap.add_argument("--tol", type=float, default=0.05, help="paper vs simplescope: tolerance on mean surprisals")
    ap.add_argument("--limit-s", type=float, default=480, help="skip optional sections past this many seconds")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: as torch sets them)")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--keep", help="save the model in this folder (kept) instead of a temporary one")
    a = ap.parse_args(argv)
    setup()
    rep = Report(a.limit_s)
    cuda = a.device.startswith("cuda")
    if a.config == "tiny":  # the dry run (make test): the same code on less data
        a.docs, a.docs_paper, a.parity_docs, a.parity_len = min(a.docs, 16), min(a.docs_paper, 2), 2, 48
    main_dtype = "float16" if cuda else "float32"
    dtypes2 = "bfloat16"

    rep.section("environment")
    import numpy as np
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 references in float32, not TF32
    import make_model
    import simplescope as ss
    from simplescope import _native
    if cuda:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --device cpu for a dry run")
        p = torch.cuda.get_device_properties(torch.device(a.device))
        rep.line(f"{p.name}, {p.total_memory / GIB:.1f} GiB, {torch.cuda.device_count()} GPU(s); torch {torch.__version__} "
                 f"CUDA {torch.version.cuda}")
    else:
        rep.line(f"CPU dry run, torch {torch.__version__}, {torch.get_num_threads()} threads")
    info = ss.backend_info()
    shim = Shim(_native)
    rep.line(f"simplescope {info['simplescope_version']}, shim built for torch {info.get('torch_version')}, "
             f"libraries {os.environ['SIMPLESCOPE_LIB_DIR']}; allocator fraction readable by the shim: "
             f"{bool(shim.lib.sst_cuda_memory_fraction_known())}")
    rep.put("environment", {"device": a.device, "torch": torch.__version__, "config": a.config})

    tmp = None
    path = a.keep
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="ss-gpu-check-")
        path = os.path.join(tmp.name, a.config)
    try:
        rep.section(f"model: random {a.config} in {main_dtype} on {a.device}")
        t0 = time.perf_counter()
        hf = make_model.build(a.config, 0, a.device, main_dtype)
        t1 = time.perf_counter()
        make_model.make(a.config, path, model=hf, dtype=main_dtype)
        t2 = time.perf_counter()
        model = ss.load(path, device=a.device, dtype=main_dtype)
        t3 = time.perf_counter()
        cfg = model.config
        rep.line(f"made in {t1 - t0:.1f} s, saved in {t2 - t1:.1f} s, loaded by simplescope in {t3 - t2:.1f} s")
        L = cfg["n_layer"]

        docs = seed_documents(_native, model, a.corpus, a.docs, cfg["n_positions"])
        rng = np.random.default_rng(42)
        pos = np.stack([rng.integers(0, len(d) + 1, size=L) for d in docs])  # [n, L]; lengths count BOS
        targets = {"patchscope": model.tokenize(PATCHSCOPE_PROMPT, prepend_bos=True),
                   "simplescope": model.tokenize("?", prepend_bos=True)}
        lens = sorted(len(d) + 1 for d in docs)
        rep.line(f"{len(docs)} seed-preset documents, {sum(lens)} tokens with BOS (median {lens[len(lens) // 2]}, "
                 f"longest {lens[-1]})")

        rep.section(f"HF parity, {main_dtype}")
        pdocs = [[50256] + d for d in sorted(docs, key=len)[-(a.parity_docs - 1):]] + [[50256] + docs[0]]
        modes = [("sdpa", 2), ("explicit", 0)]
        ok = parity(rep, shim, model, hf, pdocs, main_dtype, a.device, modes, a.parity_len)
        if cuda and not ok["sdpa"] and ok["explicit"]:
            shim.set_sdpa(0)
            rep.line("SDPA is outside the bound: the rest of the run uses the explicit attention "
                     "(and CUDA's default should be changed: sst_set_sdpa / torch.SetSDPA)")

        rep.section("seed experiment")
        res, sec = experiment(rep, shim, model, docs, targets, pos, cfg, a.device, main_dtype)

        rep.section("deterministic")
        deterministic(rep, model, docs[:64], pos[:64])

        if rep.left() > 60:
            rep.section("paper's batched HF hooks, subsample")
            k = min(a.docs_paper, len(docs))
            paper_baseline(rep, hf, res, docs[:k], targets, pos[:k], L, sec, a.device, main_dtype, a.tol)
        else:
            rep.line("skipped: out of time")

        rep.section("out of memory: halve and retry" + (" under a memory fraction" if cuda else ""))
        n = min(len(docs), 600)
        oom_retry(rep, shim, model, docs[:n], pos[:n], cfg, a.device)

        if rep.left() > 45:
            rep.section("patch and generate throughput")
            throughput(rep, model, cfg, n_patch=4096 if cuda else 64, n_gen=256 if cuda else 8,
                       new_tokens=32 if cuda else 4)

        rep.section("several devices")
        if cuda and torch.cuda.device_count() > 1 and rep.left() > 60:
            one = model.evaluate(docs[:64], methods=METHODS, positions=pos[:64], progress=False,
                                 chunk_prompts=16, deterministic=True)
            replicas(rep, ss, path, [f"cuda:{i}" for i in range(torch.cuda.device_count())], main_dtype,
                     docs[:64], pos[:64], one)
        elif not cuda:
            n = min(8, len(docs))
            one = model.evaluate(docs[:n], methods=METHODS, positions=pos[:n], progress=False,
                                 chunk_prompts=max(1, n // 4), deterministic=True)
            replicas(rep, ss, path, ["cpu", "cpu"], main_dtype, docs[:n], pos[:n], one)
        else:
            rep.line("skipped: one GPU (device=['cuda:0', 'cuda:1'] is tested on the CPU as ['cpu', 'cpu'])")

        rep.section(f"HF parity, {dtypes2}")
        model.close()
        del model
        if cuda:
            torch.cuda.empty_cache()
        hf.to(getattr(torch, dtypes2))
        mb = ss.load(path, device=a.device, dtype=dtypes2)
        try:
            parity(rep, shim, mb, hf, pdocs, dtypes2, a.device, modes, a.parity_len)
        finally:
            mb.close()
    except Exception:
        traceback.print_exc()
        rep.failed.append("exception")
    finally:
        if tmp is not None:
            tmp.cleanup()

    rep.section("summary")
    rep.line(f"total {rep.elapsed():.0f} s; " + ("all checks passed" if not rep.failed else
                                                  "FAILED: " + "; ".join(rep.failed)))
    if a.json:
        rep.put("seconds", rep.elapsed())
        rep.put("failed", rep.failed)
        with open(a.json, "w") as f:
            json.dump(rep.data, f, indent=1, default=str)
    return 0 if not rep.failed else 1


if __name__ == "__main__":
    sys.exit(main())
