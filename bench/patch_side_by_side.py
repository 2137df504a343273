"""Side by side: patch and generate, simplescope against the paper's way (HF forward hooks), on one
machine, model, set of rows and torch thread count.

  (a) patch     next-token logits for --rows rows: row i takes the hidden state of source document
                d_i at layer l_i (cycling through the layers) and a random position, and patches it
                into the last position of a target at the same layer (half the rows the paper's
                few-shot target, half "?"), token identity as in §4.1.
  (b) generate  --gen-tokens greedy tokens for rows over a source x target layer grid: the hidden
                state of a source document's last token at source layer ls, patched into the last
                position of the paper's entity-description prompt at target layer lt.

  reference  the Patchscopes code's procedure: batches of --batch rows, left padding; a source
             forward with output_hidden_states, then the target forward (or HF generate) with one
             forward hook per layer on transformer.h[l] writing the rows patched there (only in the
             prompt pass for generate), the prediction read at the last position.
  ss         model.patch(targets, ss.Source(...)) and model.generate(...), one call each.

Both get the same token ids and positions. The script checks agreement per row (top-1 equal,
largest logit difference; generated tokens equal) and prints rows/s for both, their ratio, and
simplescope's achieved FLOP rate against the measured float32 matmul rate (torch.matmul of two
n x n matrices at the same thread count) for the minimal FLOP count (2 per multiply-add; C =
n_embd, V = vocab, L = n_layer, 24 C^2 per token and block, attention counted too):
  (a) every distinct source document through all L blocks; each target prefix once; per row the
      patched position through blocks l+1 .. L-1 attending to the prefix, then 2 C V.
  (b) each source document through all L blocks (logits not needed); the prompt prefix once; per
      row the patched position through blocks lt+1 .. L-1, then per new token all L blocks and
      2 C V.

Run from the repo root after `make build`:
  .venv/bin/python bench/patch_side_by_side.py --config small --threads 2
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)

PATCHSCOPE_PROMPT = "cat -> cat\n1135 -> 1135\nhello -> hello\n?"
DESCRIBE_PROMPT = ("Syria: Country in the Middle East, Leonardo DiCaprio: American actor, Samsung: South Korean "
                   "multinational major appliance and consumer electronics corporation, x")
EOS = 50256


def default_cache():
    return os.environ.get("SIMPLESCOPE_BENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "simplescope-bench")


# ------------------------------------------------------------------------------ the workloads
def source_docs(tok, n, max_tokens):
    from simplescope.data_io import read_corpus
    docs = []
    for text in read_corpus(os.path.join(ROOT, "testdata", "corpus", "sample.jsonl.zst")):
        ids = tok.encode(text, add_special_tokens=False).ids
        if 4 <= len(ids) <= max_tokens:
            docs.append(ids)
        if len(docs) == n:
            return docs
    raise SystemExit(f"the sample corpus has only {len(docs)} documents of 4..{max_tokens} tokens")


def patch_rows(tok, L, n_rows, n_docs, rng):
    """(source ids, layer, source position, target ids) per row."""
    docs = source_docs(tok, n_docs, 48)
    targets = [tok.encode(PATCHSCOPE_PROMPT).ids, tok.encode("?").ids]
    rows = []
    for i in range(n_rows):
        d = docs[i % len(docs)]
        rows.append((d, i % L, int(rng.integers(0, len(d))), targets[i % 2]))
    return rows


def generate_rows(tok, L, n_docs):
    """(source ids, source layer, target layer) per row: every pair of layers for every document."""
    docs = source_docs(tok, n_docs, 48)
    return [(d, ls, lt) for d in docs for ls in range(L) for lt in range(L)]


# ------------------------------------------------------------------------------ the reference
def left_pad(seqs):
    import torch
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), EOS, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, T - len(s):] = torch.tensor(s)
        mask[i, T - len(s):] = 1
    return ids, mask


def block_outputs(hf, seqs, layers, positions):
    """block `layer` outputs (before ln_f for the last block) at positions, via forward hooks."""
    import torch
    ids, mask = left_pad(seqs)
    T = ids.shape[1]
    got = {}
    hooks = []
    for l in sorted(set(layers)):
        def hook(_m, _a, output, l=l):
            got[l] = output[0] if isinstance(output, tuple) else output
        hooks.append(hf.transformer.h[l].register_forward_hook(hook))
    try:
        with torch.no_grad():
            hf(input_ids=ids, attention_mask=mask)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack([got[l][i, T - len(seqs[i]) + p] for i, (l, p) in enumerate(zip(layers, positions))])


def hooks_writing(hf, layers, vectors, at, prompt_pass_only):
    """One forward hook per layer writing vectors[i] at [i, at[i]] of rows patched at that layer."""
    handles = []
    calls = {}
    for l in sorted(set(layers)):
        rows = [i for i, x in enumerate(layers) if x == l]

        def hook(_m, _a, output, rows=rows, l=l):
            calls[l] = calls.get(l, 0) + 1
            if prompt_pass_only and calls[l] > 1:
                return output
            h = output[0] if isinstance(output, tuple) else output
            h = h.clone()
            for i in rows:
                h[i, at[i]] = vectors[i]
            return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h
        handles.append(hf.transformer.h[l].register_forward_hook(hook))
    return handles


def reference_patch(hf, rows, batch):
    import torch
    out = []
    for lo in range(0, len(rows), batch):
        part = rows[lo:lo + batch]
        vecs = block_outputs(hf, [r[0] for r in part], [r[1] for r in part], [r[2] for r in part])
        ids, mask = left_pad([r[3] for r in part])
        handles = hooks_writing(hf, [r[1] for r in part], vecs, [ids.shape[1] - 1] * len(part), False)
        try:
            with torch.no_grad():
                out.append(hf(input_ids=ids, attention_mask=mask).logits[:, -1].float())
        finally:
            for h in handles:
                h.remove()
    return torch.cat(out)


def reference_generate(hf, rows, target, n_new, batch):
    import torch
    out = []
    for lo in range(0, len(rows), batch):
        part = rows[lo:lo + batch]
        vecs = block_outputs(hf, [r[0] for r in part], [r[1] for r in part], [len(r[0]) - 1 for r in part])
        ids, mask = left_pad([target] * len(part))
        handles = hooks_writing(hf, [r[2] for r in part], vecs, [ids.shape[1] - 1] * len(part), True)
        try:
            with torch.no_grad():
                g = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n_new, do_sample=False,
                                eos_token_id=EOS, pad_token_id=EOS)
        finally:
            for h in handles:
                h.remove()
        for row in g[:, ids.shape[1]:].tolist():
            out.append(row[:row.index(EOS)] if EOS in row else row)
    return out


# ------------------------------------------------------------------------------ simplescope
def ss_patch(model, rows):
    import simplescope as ss
    src = ss.Source([r[0] for r in rows], layer=[r[1] for r in rows], position=[r[2] for r in rows])
    return model.patch([r[3] for r in rows], src, [r[1] for r in rows], -1, progress=False).logits


def ss_generate(model, rows, target, n_new):
    import simplescope as ss
    src = ss.Source([r[0] for r in rows], layer=[r[1] for r in rows], position=-1)
    return model.generate(target, src, [r[2] for r in rows], -1, max_new_tokens=n_new, progress=False).tokens


# ------------------------------------------------------------------------------ FLOPs
def block_flops(C, n_tokens, context):
    """one block on n_tokens positions attending to `context` keys each."""
    return n_tokens * (24 * C * C + 4 * C * context)


def patch_flops(cfg, rows):
    C, V, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_layer"]
    f = 0
    for d in {tuple(r[0]) for r in rows}:
        f += L * sum(block_flops(C, 1, t + 1) for t in range(len(d)))
    for t in {tuple(r[3]) for r in rows}:
        f += L * sum(block_flops(C, 1, k + 1) for k in range(len(t) - 1))
    for r in rows:
        f += (L - 1 - r[1]) * block_flops(C, 1, len(r[3])) + 2 * C * V
    return f


def generate_flops(cfg, rows, target, new_tokens):
    C, V, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_layer"]
    f = L * sum(block_flops(C, 1, k + 1) for k in range(len(target) - 1))
    for d in {tuple(r[0]) for r in rows}:
        f += L * sum(block_flops(C, 1, t + 1) for t in range(len(d)))
    for r, toks in zip(rows, new_tokens):
        f += (L - 1 - r[2]) * block_flops(C, 1, len(target)) + 2 * C * V
        for k in range(len(toks)):
            f += L * block_flops(C, 1, len(target) + k + 1) + 2 * C * V
    return f


def matmul_rate(n=1024, reps=5):
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    return reps * 2 * n ** 3 / (time.perf_counter() - t0)


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


# ------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small", help="bench/make_model.py config (tiny, small, gptj6b)")
    ap.add_argument("--rows", type=int, default=2000, help="rows of (a)")
    ap.add_argument("--gen-docs", type=int, default=32, help="source documents of (b); rows = docs x L x L")
    ap.add_argument("--gen-tokens", type=int, default=10)
    ap.add_argument("--batch", type=int, default=512, help="the reference's batch size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=default_cache())
    a = ap.parse_args()

    import torch
    from tokenizers import Tokenizer
    from transformers import GPTJForCausalLM

    import make_model
    import simplescope as ss
    torch.set_num_threads(a.threads)
    path = make_model.make(a.config, os.path.join(a.cache, a.config))
    hf = GPTJForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    model = ss.load(path)
    cfg = model.config
    L = cfg["n_layer"]
    tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    rng = np.random.default_rng(0)
    rate = matmul_rate()
    print(f"model {a.config}: n_embd {cfg['n_embd']}, n_layer {L}; {a.threads} threads; "
          f"float32 matmul {rate / 1e9:.1f} GFLOP/s")

    rows = patch_rows(tok, L, a.rows, 200, rng)
    ss_logits, t_ss = timed(lambda: ss_patch(model, rows))
    ref_logits, t_ref = timed(lambda: reference_patch(hf, rows, a.batch))
    same = (ss_logits.argmax(-1) == ref_logits.argmax(-1)).float().mean().item()
    diff = (ss_logits - ref_logits).abs().max().item()
    f = patch_flops(cfg, rows)
    print(f"(a) patch, {len(rows)} rows: simplescope {len(rows) / t_ss:.1f} rows/s ({t_ss:.2f} s), "
          f"reference {len(rows) / t_ref:.1f} rows/s ({t_ref:.2f} s): {t_ref / t_ss:.1f}x; "
          f"top-1 equal on {same:.2%} of rows, max |logit diff| {diff:.2g}; "
          f"{f / t_ss / 1e9:.1f} GFLOP/s = {f / t_ss / rate:.2f} of matmul")

    grows = generate_rows(tok, L, a.gen_docs)
    target = tok.encode(DESCRIBE_PROMPT).ids
    ss_toks, t_ss = timed(lambda: ss_generate(model, grows, target, a.gen_tokens))
    ref_toks, t_ref = timed(lambda: reference_generate(hf, grows, target, a.gen_tokens, a.batch))
    same = np.mean([x == y for x, y in zip(ss_toks, ref_toks)])
    f = generate_flops(cfg, grows, target, ss_toks)
    print(f"(b) generate {a.gen_tokens} tokens, {len(grows)} rows ({a.gen_docs} documents x {L} x {L} layers): "
          f"simplescope {len(grows) / t_ss:.1f} rows/s ({t_ss:.2f} s), reference {len(grows) / t_ref:.1f} rows/s "
          f"({t_ref:.2f} s): {t_ref / t_ss:.1f}x; same tokens on {same:.2%} of rows; "
          f"{f / t_ss / 1e9:.1f} GFLOP/s = {f / t_ss / rate:.2f} of matmul")


if __name__ == "__main__":
    main()
