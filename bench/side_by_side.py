"""Side by side: the same Patchscope experiment three ways, on one machine, model, document set and
torch thread count.

  (a) tl     the published simplescope loop: TransformerLens HookedTransformer (GPT-J architecture,
             our checkpoint's weights, no weight processing); per (document, layer, method) one
             run_with_cache on the source and one run_with_hooks on the target that overwrites
             blocks.{l}.hook_resid_post at the placeholder.
  (b) paper  the Patchscopes paper's batched HF approach (structure of its
             evaluate_patch_next_token_prediction_batch): a table of items per method, batches of
             256 items; per batch a left-padded source forward with output_hidden_states, one
             forward hook per item on transformer.h[layer_target] writing its row, a left-padded
             target forward, the prediction at the last position (at p for logitlens).
  (c) ss     simplescope's Python API (model.evaluate) in a subprocess with the project venv.

All three run on the SAME --docs documents (the same token ids, BOS prepended) and the same source
positions (one per document and layer, shared by the methods, drawn with numpy default_rng(42)), so
each is timed on the same work (items = documents x layers x methods) and their metrics must agree
example by example. The script asserts, for every (document, layer, method), against (c):
  prec1, source top-1 and patched top-1 equal, unless the reference's top-2 log-prob gap (source or
      patched) is under --tie-tol (a near-tie that rounding may flip; such items are counted);
  surprisal and paper_surprisal within --tol nats (default by dtype: float32 1e-3: the three
      accumulate float32 sums in different orders and paddings, ~1e-5 relative on logits of a few
      tens, so ~1e-4 nats, bound 10x that; float16 0.05; bfloat16 0.25).
It prints the per-layer means, the largest per-example differences, the times and the ratios, and
exits 1 on any disagreement. Times are wall-clock and CPU seconds (time.process_time: every thread
of the process that ran the loop, simplescope's Go and libtorch threads included); on a machine
shared with other work the CPU-second ratio is the steadier of the two. --docs-c N > --docs adds a timing of (c) alone on N documents (its
items/s at a larger size; not used for the ratios).

Minimal FLOPs (the floor; matmul FLOPs, 2 per multiply-add; C = n_embd, V = vocab, L = n_layer):
  source    every token of every document through all L blocks: per token and block
            24 C^2 (q, k, v, out projections 8 C^2, MLP 16 C^2) + 4 C (t + 1) for attention scores and
            values at position t; plus 2 C V for the logits at each distinct sampled position.
  prefixes  each patch method's target prefix (tokens before the placeholder) through all blocks, once.
  items     a patch item at source layer l: blocks l+1 .. L-1 for ONE position attending to the
            cached prefix of P tokens (24 C^2 + 4 C (P + 1) per block), then 2 C V for the vocabulary
            projection; a logitlens item: 2 C V only.
That count divided by simplescope's time is compared with the measured float32 matmul rate
(torch.matmul of two n x n matrices, same thread count).

Run with bench/.venv-tl (bash bench/setup_bench_env.sh: TransformerLens 2.x from PyPI), from the repo
root after `make build`:
  bench/.venv-tl/bin/python bench/side_by_side.py --config small --threads 2
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
METHODS = ("logitlens", "patchscope", "simplescope")
FIELDS = ("prec1", "surprisal", "paper_surprisal", "source_top1", "patched_top1")
REF_FIELDS = FIELDS + ("source_margin", "patched_margin")  # margins: top-1 minus top-2 log-prob
PATCHSCOPE_PROMPT = "cat -> cat\n1135 -> 1135\nhello -> hello\n?"
SIMPLESCOPE_PROMPT = "?"
BOS = 50256


def default_cache():
    return os.environ.get("SIMPLESCOPE_BENCH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "simplescope-bench")


# ---------------------------------------------------------------------------------------------
# (c) simplescope, run by the project venv (this same file with --worker)
# ---------------------------------------------------------------------------------------------
def worker(a):
    import torch  # before simplescope loads libtorch through the shim
    torch.set_num_threads(a.threads)
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import simplescope as ss
    from simplescope import _native
    with open(a.worker) as f:
        job = json.load(f)
    m = ss.load(job["model"], device=job["device"], dtype=job["dtype"])
    if job["op"] == "prepare":
        got = _native.lib().call(None, "load_data", {"path": job["corpus"], "preset": "seed"})
        texts = got["texts"][: job["n"]]
        if len(texts) < job["n"]:
            raise SystemExit(f"seed preset on {job['corpus']}: {len(texts)} documents, want {job['n']}")
        docs = [t[: 2047] for t in m.tokenize(texts)]  # ids without BOS, under the context with BOS
        targets = {"patchscope": m.tokenize(PATCHSCOPE_PROMPT, prepend_bos=True),
                   "simplescope": m.tokenize(SIMPLESCOPE_PROMPT, prepend_bos=True)}
        out = {"docs": docs, "targets": targets, "config": m.config}
    else:
        docs = job["docs"]
        pos = np.asarray(job["positions"], dtype=np.int64)
        m.evaluate(docs[:2], methods=METHODS, positions=pos[:2], prepend_bos=True, progress=False)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        res = m.evaluate(docs, methods=METHODS, positions=pos, prepend_bos=True, progress=False)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        out = {"seconds": sec, "cpu_seconds": cpu, "items": len(docs) * m.n_layers * len(METHODS), "per_example": {
            meth: {f: np.asarray(res.per_example(meth)[f], dtype=np.float64).tolist() for f in FIELDS}
            for meth in METHODS}}
    with open(job["out"], "w") as f:
        json.dump(out, f)


def call_worker(a, job):
    with tempfile.TemporaryDirectory() as td:
        jf, of = os.path.join(td, "job.json"), os.path.join(td, "out.json")
        job = dict(job, out=of, model=a.model, device=a.device, dtype=a.dtype)
        with open(jf, "w") as f:
            json.dump(job, f)
        env = dict(os.environ, SIMPLESCOPE_LIB_DIR=os.path.join(ROOT, "build", "lib"))
        subprocess.run([a.ss_python, os.path.abspath(__file__), "--worker", jf, "--threads", str(a.threads)],
                       check=True, env=env)
        with open(of) as f:
            return json.load(f)


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------
def metrics(patched_logits, y, src_logits):
    """Per item (the REF_FIELDS): prec1, surprisal (-ln p_patched(y)), paper_surprisal
    (-ln p_source(patched argmax)), the source and patched top-1, and the top-2 log-prob gaps of the
    source and patched distributions (how close each argmax is to a tie)."""
    import torch
    lp = torch.log_softmax(patched_logits.float(), -1)
    top = lp.argmax(-1)
    ls = torch.log_softmax(src_logits.float(), -1)
    gap = lambda x: (lambda t: t[..., 0] - t[..., 1])(x.topk(2, -1).values)
    return {"prec1": (top == y).float(), "surprisal": -lp.gather(-1, y[..., None])[..., 0],
            "paper_surprisal": -ls.gather(-1, top[..., None])[..., 0], "source_top1": y.float(),
            "patched_top1": top.float(), "source_margin": gap(ls), "patched_margin": gap(lp)}


def new_result(n, L):
    return {m: {f: np.full((n, L), np.nan) for f in REF_FIELDS} for m in METHODS}


def record(r, d, l, got, i=None):
    """Stores item i (or the only item) of metrics() at document d, layer l."""
    for f, v in got.items():
        r[f][d, l] = (v if i is None else v[i]).item()


# ---------------------------------------------------------------------------------------------
# (a) TransformerLens loop
# ---------------------------------------------------------------------------------------------
def load_tl(model_dir, device, dtype):
    """A HookedTransformer with GPT-J's architecture and our weights, built offline: the config by
    hand from our config.json (TL would fetch EleutherAI/gpt-j-6B's from the hub), the weights
    through TL's own GPT-J conversion, no folding or centering (from_pretrained_no_processing)."""
    import torch
    from transformers import GPTJForCausalLM
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gptj import convert_gptj_weights
    hf = GPTJForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    c = hf.config
    cfg = HookedTransformerConfig(
        d_model=c.n_embd, d_head=c.n_embd // c.n_head, n_heads=c.n_head, d_mlp=c.n_inner or 4 * c.n_embd,
        n_layers=c.n_layer, n_ctx=c.n_positions, eps=c.layer_norm_epsilon, d_vocab=c.vocab_size,
        act_fn=c.activation_function, use_attn_scale=True, use_local_attn=False,
        scale_attn_by_inverse_layer_idx=False, parallel_attn_mlp=True, positional_embedding_type="rotary",
        rotary_dim=c.rotary_dim, rotary_adjacent_pairs=True, normalization_type="LN",
        original_architecture="GPTJForCausalLM", model_name="gpt-j-random", device=device,
        dtype=getattr(torch, dtype), default_prepend_bos=True, init_weights=False)
    tl = HookedTransformer(cfg, tokenizer=None, move_to_device=False)
    sd = convert_gptj_weights(hf, cfg)
    tl.load_and_process_state_dict(sd, fold_ln=False, center_writing_weights=False, center_unembed=False,
                                   fold_value_biases=False, refactor_factored_attn_matrices=False)
    tl.to(device).eval()
    del hf
    return tl


def run_tl(tl, docs, targets, pos, L, limit_s=None):
    """Returns (result, items done, seconds, CPU seconds). Stops early after limit_s."""
    import torch
    res = new_result(len(docs), L)
    dev = tl.cfg.device
    done = 0
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for d, ids in enumerate(docs):
            src = torch.tensor([[BOS] + ids], device=dev)
            for l in range(L):
                p = int(pos[d, l])
                name = f"blocks.{l}.hook_resid_post"
                for meth in METHODS:
                    logits, cache = tl.run_with_cache(src, names_filter=name)
                    h = cache[name][0, p]
                    y = logits[0, p].argmax()
                    if meth == "logitlens":
                        tgt, tpos, site = src, p, f"blocks.{L - 1}.hook_resid_post"
                    else:
                        t = targets[meth]
                        tgt, tpos, site = torch.tensor([t], device=dev), len(t) - 1, name

                    def patch(resid, hook, h=h, tpos=tpos):
                        resid[:, tpos] = h
                        return resid
                    out = tl.run_with_hooks(tgt, fwd_hooks=[(site, patch)])
                    record(res[meth], d, l, metrics(out[0, tpos], y, logits[0, p]))
                    done += 1
            if limit_s and time.perf_counter() - t0 > limit_s:
                break
    return res, done, time.perf_counter() - t0, time.process_time() - c0


# ---------------------------------------------------------------------------------------------
# (b) the paper's batched HF forward-hook approach
# ---------------------------------------------------------------------------------------------
def left_pad(seqs, dev):
    import torch
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), BOS, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, T - len(s):] = torch.tensor(s)
        mask[i, T - len(s):] = 1
    return ids.to(dev), mask.to(dev), T


def run_paper(hf, docs, targets, pos, L, batch=256):
    """Per method, a table of items (document, source layer); batches of `batch` items, each with
    its own source forward (the paper does not share it across layers), per-item hooks."""
    import torch
    res = new_result(len(docs), L)
    dev = next(hf.parameters()).device
    blocks = hf.transformer.h
    t0, c0 = time.perf_counter(), time.process_time()
    done = 0
    with torch.no_grad():
        for meth in METHODS:
            items = [(d, l) for d in range(len(docs)) for l in range(L)]
            for b0 in range(0, len(items), batch):  # the paper drops the last partial batch; we keep it
                its = items[b0:b0 + batch]
                srcs = [[BOS] + docs[d] for d, _ in its]
                sid, smask, sT = left_pad(srcs, dev)
                out = hf(input_ids=sid, attention_mask=smask, output_hidden_states=True)
                rows = torch.arange(len(its), device=dev)
                psrc = torch.tensor([sT - len(s) + int(pos[d, l]) for s, (d, l) in zip(srcs, its)], device=dev)
                src_logits = out.logits[rows, psrc]
                y = src_logits.argmax(-1)
                hidden = [out.hidden_states[l + 1][i, psrc[i]] for i, (_, l) in enumerate(its)]
                if meth == "logitlens":
                    tgts, tl_layer = srcs, [L - 1] * len(its)
                else:
                    tgts, tl_layer = [targets[meth]] * len(its), [l for _, l in its]
                tid, tmask, tT = left_pad(tgts, dev)
                ptgt = [tT - len(t) + (int(pos[d, l]) if meth == "logitlens" else len(t) - 1)
                        for t, (d, l) in zip(tgts, its)]
                hooks = []
                for i, (_, l) in enumerate(its):
                    lt = tl_layer[i]
                    if l == lt == L - 1:  # hidden_states[L] is after ln_f: patch ln_f's output
                        def post(mod, inp, o, i=i, p=ptgt[i], h=hidden[i]):
                            o[i, p] = h
                        hooks.append(hf.transformer.ln_f.register_forward_hook(post))
                    else:
                        def post(mod, inp, o, i=i, p=ptgt[i], h=hidden[i]):
                            (o[0] if isinstance(o, tuple) else o)[i, p] = h
                        hooks.append(blocks[lt].register_forward_hook(post))
                try:
                    tout = hf(input_ids=tid, attention_mask=tmask)
                finally:
                    for hk in hooks:
                        hk.remove()
                got = metrics(tout.logits[rows, torch.tensor(ptgt, device=dev)], y, src_logits)
                for i, (d, l) in enumerate(its):
                    record(res[meth], d, l, got, i)
                done += len(its)
    return res, done, time.perf_counter() - t0, time.process_time() - c0


# ---------------------------------------------------------------------------------------------
# FLOPs and the machine's matmul rate
# ---------------------------------------------------------------------------------------------
def minimal_flops(cfg, docs, pos, targets):
    """The count defined in the module docstring (docs without BOS; positions count BOS)."""
    C, V, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_layer"]
    per_tok = 24 * C * C
    f = 0
    for d, ids in enumerate(docs):
        T = len(ids) + 1
        f += L * (per_tok * T + 4 * C * T * (T + 1) // 2)
        f += 2 * C * V * len(set(int(p) for p in pos[d]))
    for meth, t in targets.items():
        P = len(t) - 1
        f += L * (per_tok * P + 4 * C * P * (P + 1) // 2)
    n = len(docs)
    for meth in METHODS:
        f += n * L * 2 * C * V
        if meth != "logitlens":
            P = len(targets[meth]) - 1
            f += n * sum((L - 1 - l) * (per_tok + 4 * C * (P + 1)) for l in range(L))
    return f


def matmul_rate(device, dtype, n=2048, reps=5):
    import torch
    dt = getattr(torch, dtype)
    x = torch.randn(n, n, device=device, dtype=dt)
    w = torch.randn(n, n, device=device, dtype=dt)
    best = float("inf")
    for _ in range(reps + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.matmul(x, w)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


# ---------------------------------------------------------------------------------------------
# comparison and report
# ---------------------------------------------------------------------------------------------
def compare(results, L, tol, tie_tol):
    """Prints the per-layer means of each run and checks every example of (a) and (b) against (c):
    equal prec1 / source top-1 / patched top-1 except at near-ties of the reference (top-2 gap
    under tie_tol), surprisals within tol. Returns (ok, report dict)."""
    names = [k for k in ("tl", "paper", "ss") if k in results]
    ok, report = True, {}
    for meth in METHODS:
        print(f"\n{meth}: mean per layer (" + ", ".join(names) + ")")
        print("layer " + "".join(f"{'prec1 ' + n:>14}" for n in names) + "".join(f"{'surpr ' + n:>14}" for n in names))
        for l in range(L):
            line = f"{l:5d} "
            for f in ("prec1", "surprisal"):
                for n in names:
                    line += f"{np.nanmean(results[n][meth][f][:, l]):14.5f}"
            print(line)
    print(f"\nper-example agreement with (c) simplescope (prec1/top-1 equal unless a near-tie < {tie_tol:g} "
          f"nats; surprisals within {tol:g} nats):")
    for n in names:
        if n == "ss":
            continue
        rep = report[n] = {}
        for meth in METHODS:
            a, b = results[n][meth], results["ss"][meth]
            items = a["prec1"].size
            src_tie = a["source_margin"] < tie_tol
            pat_tie = a["patched_margin"] < tie_tol
            top_bad = (a["prec1"] != b["prec1"]) | (a["source_top1"] != b["source_top1"]) | (a["patched_top1"] != b["patched_top1"])
            ties = int((top_bad & (src_tie | pat_tie)).sum())
            n_top_bad = int((top_bad & ~(src_tie | pat_tie)).sum())
            ds = np.abs(a["surprisal"] - b["surprisal"])
            dp = np.abs(a["paper_surprisal"] - b["paper_surprisal"])
            ds_ok = np.where(src_tie, 0, ds)   # a flipped source top-1 changes y
            dp_ok = np.where(pat_tie, 0, dp)   # a flipped patched top-1 changes the token scored
            n_s_bad, n_p_bad = int((ds_ok > tol).sum()), int((dp_ok > tol).sum())
            good = n_top_bad == 0 and n_s_bad == 0 and n_p_bad == 0
            ok &= good
            rep[meth] = {"items": items, "top1_mismatches": n_top_bad, "near_tie_flips": ties,
                         "prec1_equal": int((a["prec1"] == b["prec1"]).sum()),
                         "max_surprisal_diff": float(np.nanmax(ds)), "max_paper_surprisal_diff": float(np.nanmax(dp)),
                         "surprisal_over_tol": n_s_bad, "paper_surprisal_over_tol": n_p_bad}
            print(f"  {n:5s} {meth:11s}: {items} items, prec1 equal {rep[meth]['prec1_equal']}/{items}, "
                  f"top-1 mismatches {n_top_bad} (+{ties} at near-ties), max |d surprisal| {np.nanmax(ds):.2e}, "
                  f"max |d paper_surprisal| {np.nanmax(dp):.2e} [{'ok' if good else 'MISMATCH'}]")
    return ok, report


def main(argv=None):
    ap = argparse.ArgumentParser(description="simplescope vs TransformerLens vs the paper's batched hooks")
    ap.add_argument("--config", default="small", help="make_model.py config (tiny, small, gptj6b)")
    ap.add_argument("--model", help="model folder (default: the bench cache's CONFIG-seed0, made if missing)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--docs", type=int, default=8, help="documents every run evaluates (the same ones)")
    ap.add_argument("--docs-c", type=int, default=0, help="also time (c) alone on this many documents (0: no)")
    ap.add_argument("--skip", default="", help="comma list of runs to skip: tl, paper")
    ap.add_argument("--batch", type=int, default=0,
                    help="(b) items per batch (default: the paper's 256 on CUDA; 16 on the CPU, where a batch's "
                         "full (B, T, vocab) float32 logits would otherwise take tens of GB)")
    ap.add_argument("--tol", type=float, default=None,
                    help="per-example bound on |surprisal difference| in nats (default by dtype: float32 1e-3, "
                         "float16 0.05, bfloat16 0.25)")
    ap.add_argument("--tie-tol", type=float, default=1e-3,
                    help="a top-1 may differ only where the reference's top-2 log-prob gap is under this (nats)")
    ap.add_argument("--ss-python", default=os.path.join(ROOT, ".venv", "bin", "python"))
    ap.add_argument("--corpus", default=os.path.join(ROOT, "testdata", "corpus", "sample.jsonl.zst"))
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    torch.set_num_threads(a.threads)
    if a.model is None:
        a.model = os.path.join(default_cache(), f"{a.config}-seed0")
    if not os.path.exists(os.path.join(a.model, ".complete")):
        cmd = [a.ss_python, os.path.join(HERE, "make_model.py"), "--config", a.config, "--out", a.model,
               "--device", a.device, "--dtype", a.dtype]
        subprocess.run(cmd, check=True)
    skip = set(filter(None, a.skip.split(",")))
    if a.tol is None:
        a.tol = {"float32": 1e-3, "float16": 0.05, "bfloat16": 0.25}[a.dtype]
    if a.batch <= 0:
        a.batch = 256 if a.device.startswith("cuda") else 16
    n_all = max(a.docs, a.docs_c)
    prep = call_worker(a, {"op": "prepare", "corpus": os.path.abspath(a.corpus), "n": n_all})
    docs_all, targets, cfg = prep["docs"], prep["targets"], prep["config"]
    L = cfg["n_layer"]
    rng = np.random.default_rng(42)
    pos_all = np.stack([rng.integers(0, len(d) + 1, size=L) for d in docs_all])  # [n, L]; len counts BOS
    docs, pos = docs_all[: a.docs], pos_all[: a.docs]
    results, speed = {}, {}

    got = call_worker(a, {"op": "evaluate", "docs": docs, "positions": pos.tolist()})
    results["ss"] = {m: {f: np.asarray(v) for f, v in d.items()} for m, d in got["per_example"].items()}
    speed["ss"] = (got["items"], got["seconds"], got["cpu_seconds"])
    print(f"(c) simplescope: {got['items']} items in {got['seconds']:.2f} s", flush=True)
    if a.docs_c > a.docs:
        big = call_worker(a, {"op": "evaluate", "docs": docs_all, "positions": pos_all.tolist()})
        speed["ss-large"] = (big["items"], big["seconds"], big["cpu_seconds"])
        print(f"(c) simplescope on {len(docs_all)} documents: {big['items']} items in {big['seconds']:.2f} s", flush=True)

    if "paper" not in skip:
        from transformers import GPTJForCausalLM
        hf = GPTJForCausalLM.from_pretrained(a.model, dtype=getattr(torch, a.dtype)).to(a.device).eval()
        run_paper(hf, docs[:1], targets, pos, L, batch=a.batch)  # warm-up
        r, n, s, c = run_paper(hf, docs, targets, pos, L, batch=a.batch)
        results["paper"], speed["paper"] = r, (n, s, c)
        print(f"(b) paper batched hooks: {n} items in {s:.2f} s", flush=True)
        del hf
    if "tl" not in skip:
        tl = load_tl(a.model, a.device, a.dtype)
        run_tl(tl, docs[:1], targets, pos, 1)  # warm-up: one layer of one document
        r, n, s, c = run_tl(tl, docs, targets, pos, L)
        results["tl"], speed["tl"] = r, (n, s, c)
        print(f"(a) TransformerLens loop: {n} items in {s:.2f} s", flush=True)
        del tl

    print(f"\nmetric agreement on the same {len(docs)} documents")
    agree, report = compare(results, L, a.tol, a.tie_tol)

    flops = minimal_flops(cfg, docs, pos, targets)
    rate = matmul_rate(a.device, a.dtype, n=8192 if a.device.startswith("cuda") else 2048)
    ips = {n: i / s for n, (i, s, _) in speed.items()}
    cps = {n: i / c for n, (i, _, c) in speed.items()}  # items per CPU second (all threads)
    achieved = flops / speed["ss"][1]
    print(f"\nconfig {a.config} (n_embd {cfg['n_embd']}, n_layer {L}, vocab {cfg['vocab_size']}), "
          f"{a.device} {a.dtype}, torch threads {a.threads}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'run':28s}{'docs':>6s}{'items':>8s}{'wall s':>9s}{'CPU s':>9s}{'items/s':>10s}{'items/CPU s':>13s}"
          f"{'ss speed-up':>13s}{'(CPU)':>8s}")
    label = {"tl": "(a) TransformerLens loop", "paper": "(b) paper batched hooks", "ss": "(c) simplescope",
             "ss-large": "(c) simplescope, more docs"}
    for n in ("tl", "paper", "ss", "ss-large"):
        if n in speed:
            i, s, c = speed[n]
            nd = i // (L * len(METHODS))
            ratio = f"{ips['ss'] / ips[n]:12.1f}x{cps['ss'] / cps[n]:7.1f}x" if n != "ss-large" else ""
            print(f"{label[n]:28s}{nd:6d}{i:8d}{s:9.2f}{c:9.2f}{ips[n]:10.2f}{cps[n]:13.2f} {ratio}")
    print(f"minimal FLOPs of (c)'s experiment {flops / 1e9:.1f} GFLOP; at (c)'s time {achieved / 1e9:.2f} GFLOP/s; "
          f"measured matmul {rate / 1e9:.1f} GFLOP/s; fraction {achieved / rate:.3f}")
    print("metrics agree" if agree else "METRICS DISAGREE")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": a.config, "threads": a.threads, "device": a.device, "dtype": a.dtype,
                       "speed": {n: {"items": i, "seconds": s, "cpu_seconds": c, "items_per_s": i / s,
                                     "items_per_cpu_s": i / c} for n, (i, s, c) in speed.items()},
                       "load_average": os.getloadavg()[0],
                       "min_flops": flops, "matmul_flops_per_s": rate, "flop_fraction": achieved / rate,
                       "docs": len(docs), "tol": a.tol, "tie_tol": a.tie_tol, "agree": agree,
                       "per_example": report}, f, indent=1)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
