"""Side by side for every supported family: simplescope's evaluate against the Patchscopes paper's batched
HF forward-hook procedure (bench/side_by_side.py's (b)), on a small random model of each family made by
HF transformers, on one machine, document set and torch thread count. Also, with --rss, the peak memory
of loading a larger checkpoint of each family (bench/load_rss).

Both runs get the same token ids (the bundled GPT-J tokenizer on the sample corpus; the models have its
vocabulary of 50400, BOS 50256 prepended) and the same source positions (numpy default_rng(42)), and the
methods logitlens, patchscope and simplescope (their targets as token ids). The paper's procedure per
method: a table of items (document, layer), batches of --batch items, each batch a left-padded source
forward (position ids from the attention mask, so GPT-2's learned positions see the unpadded positions)
with forward hooks keeping every block's output, then a left-padded target forward with one forward hook
per item on its target block writing its row (logitlens: the last block at the source position), the
prediction read at that position. The script prints items/s of both, simplescope's speed-up and the
largest per-example differences of prec1 / surprisal / paper_surprisal.

    .venv/bin/python bench/families_side_by_side.py --threads 2 [--docs 24] [--families llama,mistral] [--rss]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "core", "gptj", "testdata"))
import hf_families  # noqa: E402

METHODS = ("logitlens", "patchscope", "simplescope")
PATCHSCOPE_PROMPT = "cat -> cat\n1135 -> 1135\nhello -> hello\n?"
SIMPLESCOPE_PROMPT = "?"
BOS = 50256

BASE = dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, intermediate_size=704, vocab_size=50400,
            max_position_embeddings=256, bos_token_id=BOS, eos_token_id=BOS)
GQA = dict(BASE, num_key_value_heads=2)
# family -> (model_type, config kwargs) of the benchmark's small models
SMALL = {
    "gpt_neox": ("gpt_neox", dict(BASE, intermediate_size=1024, rotary_pct=0.25)),
    "gpt2": ("gpt2", dict(n_embd=256, n_layer=6, n_head=8, vocab_size=50400, n_positions=256, bos_token_id=BOS,
                          eos_token_id=BOS)),
    "llama": ("llama", dict(GQA, rope_theta=500000.0, tie_word_embeddings=True,
                            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
    "mistral": ("mistral", dict(GQA, sliding_window=32)),
    "qwen2": ("qwen2", dict(GQA, tie_word_embeddings=True)),
    "qwen3": ("qwen3", dict(GQA, head_dim=48)),
    "gemma": ("gemma", dict(BASE, num_key_value_heads=1, head_dim=64)),
}


def build(family, scale=1, seed=0):
    from transformers import AutoModelForCausalLM
    mt, kw = SMALL[family]
    kw = dict(kw)
    if scale != 1:
        for k in ("hidden_size", "n_embd", "intermediate_size"):
            if k in kw:
                kw[k] *= scale
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(hf_families.config_for(mt, kw), attn_implementation="eager").eval()
    hf_families.redraw(hf, seed)
    return hf


def left_pad(seqs):
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), BOS, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, T - len(s):] = torch.tensor(s)
        mask[i, T - len(s):] = 1
    return ids, mask, T


def metrics(patched_logits, y, src_logits):
    lp = torch.log_softmax(patched_logits.float(), -1)
    top = lp.argmax(-1)
    ls = torch.log_softmax(src_logits.float(), -1)
    return (top == y).float(), -lp.gather(-1, y[..., None])[..., 0], -ls.gather(-1, top[..., None])[..., 0]


def run_paper(hf, docs, targets, pos, batch):
    """The paper's batched hooks procedure (see the module docstring); returns per-example metrics."""
    blocks = hf_families.layers(hf)
    L = len(blocks)
    res = {m: {f: np.full((len(docs), L), np.nan) for f in ("prec1", "surprisal", "paper_surprisal")} for m in METHODS}
    with torch.no_grad():
        for meth in METHODS:
            items = [(d, l) for d in range(len(docs)) for l in range(L)]
            for b0 in range(0, len(items), batch):
                its = items[b0:b0 + batch]
                srcs = [[BOS] + docs[d] for d, _ in its]
                sid, smask, sT = left_pad(srcs)
                outs = {}
                hooks = [blk.register_forward_hook(lambda m, i, o, l=l: outs.__setitem__(l, o[0] if isinstance(o, tuple) else o))
                         for l, blk in enumerate(blocks)]
                try:
                    out = hf(input_ids=sid, attention_mask=smask, position_ids=(smask.cumsum(-1) - 1).clamp(min=0))
                finally:
                    for h in hooks:
                        h.remove()
                rows = torch.arange(len(its))
                psrc = torch.tensor([sT - len(s) + int(pos[d, l]) for s, (d, l) in zip(srcs, its)])
                src_logits = out.logits[rows, psrc]
                y = src_logits.argmax(-1)
                hidden = [outs[l][i, psrc[i]].clone() for i, (_, l) in enumerate(its)]
                if meth == "logitlens":
                    tgts, tl = srcs, [L - 1] * len(its)
                else:
                    tgts, tl = [targets[meth]] * len(its), [l for _, l in its]
                tid, tmask, tT = left_pad(tgts)
                ptgt = [tT - len(t) + (int(pos[d, l]) if meth == "logitlens" else len(t) - 1) for t, (d, l) in zip(tgts, its)]
                hooks = []
                for i in range(len(its)):
                    def post(mod, inp, o, i=i, p=ptgt[i], h=hidden[i]):
                        (o[0] if isinstance(o, tuple) else o)[i, p] = h
                    hooks.append(blocks[tl[i]].register_forward_hook(post))
                try:
                    tout = hf(input_ids=tid, attention_mask=tmask, position_ids=(tmask.cumsum(-1) - 1).clamp(min=0))
                finally:
                    for h in hooks:
                        h.remove()
                pr, su, ps = metrics(tout.logits[rows, torch.tensor(ptgt)], y, src_logits)
                r = res[meth]
                for i, (d, l) in enumerate(its):
                    r["prec1"][d, l], r["surprisal"][d, l], r["paper_surprisal"][d, l] = pr[i].item(), su[i].item(), ps[i].item()
    return res


def run_ss(path, docs, targets, pos):
    import simplescope as ss
    m = ss.load(path, device="cpu", dtype="float32")
    # evaluate prepends BOS to the targets as to the documents: give them without it
    methods = ["logitlens"] + [{"name": k, "target_tokens": t[1:], "placeholder": len(t) - 2} for k, t in targets.items()]
    m.evaluate(docs[:2], methods=methods, positions=pos[:2], prepend_bos=True, progress=False)  # warm-up
    t0 = time.perf_counter()
    res = m.evaluate(docs, methods=methods, positions=pos, prepend_bos=True, progress=False)
    sec = time.perf_counter() - t0
    out = {meth: {f: np.asarray(res.per_example(meth)[f], dtype=np.float64)
                  for f in ("prec1", "surprisal", "paper_surprisal")} for meth in METHODS}
    m.close()
    return out, sec


def load_rss(families, out):
    """Saves a larger checkpoint of each family (4× the width) and runs bench/load_rss on it."""
    dirs = []
    for fam in families:
        d = os.path.join(out, fam + "-x4")
        if not os.path.exists(os.path.join(d, "config.json")):
            build(fam, scale=4).save_pretrained(d, safe_serialization=True)
        dirs.append(d)
    env = dict(os.environ, SIMPLESCOPE_LIB_DIR=os.path.join(ROOT, "build", "lib"))
    for d in dirs:  # one process per model: RssAnon starts from the same baseline
        subprocess.run(["go", "run", "./bench/load_rss", "-dtype", "float32", d], cwd=ROOT, env=env, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--docs", type=int, default=24)
    ap.add_argument("--max-tokens", type=int, default=120, help="documents cut to this many tokens")
    ap.add_argument("--batch", type=int, default=256, help="the paper's items per batch")
    ap.add_argument("--families", default=",".join(SMALL))
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "simplescope-families-bench"))
    ap.add_argument("--rss", action="store_true", help="also measure load memory (bench/load_rss)")
    ap.add_argument("--json", help="write the numbers here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from tokenizers import Tokenizer
    from simplescope.data_io import read_corpus
    tok = Tokenizer.from_file(os.path.join(ROOT, "python", "simplescope", "data", "tokenizer", "tokenizer.json"))
    texts = read_corpus(os.path.join(ROOT, "testdata", "corpus", "sample.jsonl.zst"))
    docs = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids[: a.max_tokens]
        if len(ids) >= 4:
            docs.append(ids)
        if len(docs) == a.docs:
            break
    targets = {"patchscope": [BOS] + tok.encode(PATCHSCOPE_PROMPT, add_special_tokens=False).ids,
               "simplescope": [BOS] + tok.encode(SIMPLESCOPE_PROMPT, add_special_tokens=False).ids}
    families = a.families.split(",")
    report = {}
    print(f"{len(docs)} documents, {sum(map(len, docs))} tokens, {a.threads} threads")
    print(f"{'family':10s} {'L':>2s} {'items':>6s} {'paper s':>8s} {'ss s':>7s} {'paper it/s':>11s} {'ss it/s':>9s} "
          f"{'speed-up':>8s}  max |diff| prec1 / surprisal / paper_surprisal")
    for fam in families:
        hf = build(fam)
        L = len(hf_families.layers(hf))
        path = os.path.join(a.cache, fam)
        hf.save_pretrained(path, safe_serialization=True)
        rng = np.random.default_rng(42)
        pos = np.stack([rng.integers(0, len(d) + 1, size=L) for d in docs]).astype(np.int64)  # +1: BOS
        t0 = time.perf_counter()
        ref = run_paper(hf, docs, targets, pos, a.batch)
        tp = time.perf_counter() - t0
        got, ts = run_ss(path, docs, targets, pos)
        items = len(docs) * L * len(METHODS)
        diffs = [max(float(np.nanmax(np.abs(ref[m][f] - got[m][f]))) for m in METHODS)
                 for f in ("prec1", "surprisal", "paper_surprisal")]
        report[fam] = {"layers": L, "items": items, "paper_s": tp, "ss_s": ts, "max_diff": diffs}
        print(f"{fam:10s} {L:2d} {items:6d} {tp:8.2f} {ts:7.2f} {items / tp:11.1f} {items / ts:9.1f} {tp / ts:7.1f}×  "
              f"{diffs[0]:.0f} / {diffs[1]:.1e} / {diffs[2]:.1e}")
        del hf
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    if a.rss:
        load_rss(families, a.cache)


if __name__ == "__main__":
    main()
