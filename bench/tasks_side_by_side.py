"""Side by side: attribute extraction (Patchscopes §4.2) the paper's way and simplescope's way, on
the same weights, task rows, layer pairs and torch thread count.

  (a) paper      the structure of the paper's evaluate_attriburte_exraction_batch: items (row,
                 source layer, target layer) in the paper's order, batches of --batch (512) items;
                 per batch a left-padded source forward (pad id 0, attention mask) with
                 output_hidden_states, the hidden state read at hidden_states[ℓ+1][i][position_source],
                 one forward hook per item on transformer.h[ℓ*] writing its row at the placeholder
                 (skipped on one-token decode steps), then HF generate(input_ids, max_length = target
                 length + 10, pad_token_id = EOS), greedy.
  (b) corrected  the same, but position_source shifted by the row's left padding. The paper's code
                 indexes position_source into the left-padded batch, so for every source prompt
                 shorter than the longest of its batch it reads a token that many places too early
                 (often a pad token); (b) reads the token the table names.
  (c) ss         simplescope.tasks.attribute_extraction on the same rows (one source pass per row
                 and source layer, the target's prefix computed once, batched decode with a K/V cache).

Reported: result rows (row x layer pair) per second of (a) and (c) and their ratio, by wall time
and by the process's CPU time (steadier on a shared machine); identical
generations of (c) and (b) over all items, and of (c) and (a) over the items where (a) reads the
right token (no left padding in its source row); how many items (a) reads wrongly and how often
that changes the generation; the accuracy each gets. (The paper's loop also drops its last partial
batch; here every item runs.)

Run from the repo root after `make build` (the project venv has HF transformers):
  .venv/bin/python bench/tasks_side_by_side.py --config small --threads 2 --rows 40
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))
EOS = 50256


def default_cache():
    return os.environ.get("SIMPLESCOPE_BENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                      "simplescope-bench")


def paper_generations(hf, tok, rows, items, batch, max_new, corrected):
    """Generated token ids (cut at the first EOS) per item, the paper's batched way; and, per item,
    the left padding of its source row."""
    import torch

    def make_inputs(texts):  # the paper's general_utils.make_inputs: left padding with id 0
        toks = [tok.encode(t, add_special_tokens=False).ids for t in texts]
        n = max(len(t) for t in toks)
        ids = [[0] * (n - len(t)) + t for t in toks]
        mask = [[0] * (n - len(t)) + [1] * len(t) for t in toks]
        return torch.tensor(ids), torch.tensor(mask), [n - len(t) for t in toks]

    out, pads = [], []
    for lo in range(0, len(items), batch):
        chunk = items[lo:lo + batch]
        r = [rows[i] for i, _, _ in chunk]
        src_ids, src_mask, pad = make_inputs([x["prompt_source"] for x in r])
        tgt_ids, _, _ = make_inputs([x["prompt_target"] for x in r])
        seq_len = tgt_ids.shape[1]
        with torch.no_grad():
            hs = hf(input_ids=src_ids, attention_mask=src_mask, output_hidden_states=True).hidden_states
            reps = [hs[ls + 1][i][x["position_source"] + (pad[i] if corrected else 0)]
                    for i, ((_, ls, _), x) in enumerate(zip(chunk, r))]
            hooks = []
            for i, ((_, _, lt), x) in enumerate(zip(chunk, r)):
                pt = x["position_target"] + seq_len if x["position_target"] < 0 else x["position_target"]

                def hook(_m, _a, output, i=i, pt=pt, v=reps[i]):
                    h = output[0] if isinstance(output, tuple) else output
                    if h.shape[1] == 1:  # a decode step: the patch belongs to the prompt pass
                        return
                    h[i, pt] = v

                hooks.append(hf.transformer.h[lt].register_forward_hook(hook))
            try:
                gen = hf.generate(tgt_ids, max_length=seq_len + max_new, pad_token_id=EOS, do_sample=False)
            finally:
                for h in hooks:
                    h.remove()
        for row in gen[:, seq_len:].tolist():
            out.append(row[:row.index(EOS)] if EOS in row else row)
        pads.extend(pad)
    return out, pads


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small", help="make_model.py config (tiny, small, gptj6b)")
    ap.add_argument("--model", help="model folder (default: the bench cache's CONFIG-seed0, made if missing)")
    ap.add_argument("--task", default="country_capital_city")
    ap.add_argument("--rows", type=int, default=40, help="the first N rows of the filtered table")
    ap.add_argument("--batch", type=int, default=512, help="the paper's batch of items")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=10)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()

    import torch
    torch.set_num_threads(a.threads)
    if not a.model:
        a.model = os.path.join(default_cache(), f"{a.config}-seed0")
        subprocess.run([sys.executable, os.path.join(HERE, "make_model.py"), "--config", a.config, "--out", a.model],
                       check=True)
    import simplescope as ss
    from simplescope.tasks import attribute as ae
    from tokenizers import Tokenizer
    from transformers import GPTJForCausalLM

    model = ss.load(a.model)
    L = model.n_layers
    S = T = list(range(L - 1))
    table = ae.load_task(a.task)
    sel = ae.select_rows(table, list(range(min(a.rows, len(table.df)))))
    prep = ae.prepare(model, table, sel, a.max_new_tokens)  # rows past the end of their source are skipped
    rows = [dict(r) for r in prep.df.to_dict("records")]
    print(f"{a.task}: {len(rows)} rows ({len(prep.skipped_rows)} skipped), {len(S)}x{len(T)} layer pairs, "
          f"{a.threads} threads, model {a.model}", flush=True)

    t0, c0 = time.perf_counter(), time.process_time()
    res = ss.tasks.attribute_extraction(model, a.task, rows=list(sel["sample"]), source_layers=S, target_layers=T,
                                        max_new_tokens=a.max_new_tokens, progress=False)
    t_ss, c_ss = time.perf_counter() - t0, time.process_time() - c0
    n_items = len(res.df)
    print(f"simplescope: {n_items} rows in {t_ss:.1f} s = {n_items / t_ss:.1f} rows/s "
          f"({c_ss:.1f} CPU s = {n_items / c_ss:.1f} rows per CPU s)", flush=True)
    model.close()

    hf = GPTJForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    items = [(i, ls, lt) for i in range(len(rows)) for ls in S for lt in T]  # the paper's order
    t0, c0 = time.perf_counter(), time.process_time()
    lit, pads = paper_generations(hf, tok, rows, items, a.batch, a.max_new_tokens, corrected=False)
    t_paper, c_paper = time.perf_counter() - t0, time.process_time() - c0
    print(f"paper:       {len(items)} rows in {t_paper:.1f} s = {len(items) / t_paper:.1f} rows/s "
          f"({c_paper:.1f} CPU s = {len(items) / c_paper:.1f} rows per CPU s)", flush=True)
    cor, _ = paper_generations(hf, tok, rows, items, a.batch, a.max_new_tokens, corrected=True)

    ours = {(int(r.sample), int(r.layer_source), int(r.layer_target)): r.generation for r in res.df.itertuples()}
    sample_of = [int(r["sample"]) for r in rows]
    dec = lambda t: tok.decode(t, skip_special_tokens=False)
    same_cor = same_lit = n_right = shifted = shifted_changed = 0
    acc = {"ss": 0, "paper": 0, "corrected": 0}
    for (i, ls, lt), gl, gc, pad in zip(items, lit, cor, pads):
        g = ours[(sample_of[i], ls, lt)]
        tl, tc = dec(gl), dec(gc)
        same_cor += g == tc
        if pad == 0:
            n_right += 1
            same_lit += g == tl
        else:
            shifted += 1
            shifted_changed += tl != tc
        obj = rows[i]["object"]
        acc["ss"] += ae.is_correct(obj, g)
        acc["paper"] += ae.is_correct(obj, tl)
        acc["corrected"] += ae.is_correct(obj, tc)
    figures = {
        "task": a.task, "rows": len(rows), "pairs": len(S) * len(T), "items": len(items), "threads": a.threads,
        "ss_rows_per_s": n_items / t_ss, "paper_rows_per_s": len(items) / t_paper,
        "speedup": (n_items / t_ss) / (len(items) / t_paper),
        "ss_rows_per_cpu_s": n_items / c_ss, "paper_rows_per_cpu_s": len(items) / c_paper,
        "speedup_cpu_time": (n_items / c_ss) / (len(items) / c_paper),
        "same_as_corrected": same_cor / len(items),
        "same_as_paper_where_paper_reads_right_token": same_lit / max(1, n_right), "paper_right_token_items": n_right,
        "paper_shifted_items": shifted, "paper_shifted_items_changed": shifted_changed,
        "accuracy": {k: v / len(items) for k, v in acc.items()},
    }
    print(json.dumps(figures, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
