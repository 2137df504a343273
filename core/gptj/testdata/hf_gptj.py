"""Make a tiny random GPT-J with HF transformers and the reference outputs the Go tests compare with.

usage: hf_gptj.py OUTDIR SPEC [SPEC ...]    SPEC = NAME:N_EMBD:N_LAYER:N_HEAD:ROTARY_DIM:VOCAB:FORMAT:SEED

FORMAT: st | st-sharded | bin | bin-sharded. For each SPEC writes OUTDIR/NAME/model (config.json + weights in that
format) and OUTDIR/ref/model.safetensors with, for each prompt i (random ids, lengths 5, 9, 13):
  ids.{i}      int64 (T,)
  logits.{i}   float32 (T, V)              GPTJForCausalLM, float32, CPU, unpadded
  embed.{i}    float32 (T, C)              output of transformer.wte (hook_embed)
  resid.{i}.{l} float32 (T, C)             output of transformer.h[l] (hook_resid_post), via hooks
  bf16.logits.{i} float32 (T, V)           the same model cast to bfloat16 (logits upcast)
  f16.logits.{i}  float32 (T, V)           the same model cast to float16 on the CPU (logits upcast)
  f16.resid.{i}.{l} float32 (T, C)         its block outputs (hook_resid_post), upcast
Weights are re-drawn with a larger scale than HF's init (std 0.02 makes every block nearly the
identity), so that the comparison exercises attention, rotary and the MLP.
"""
import copy
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import GPTJConfig, GPTJForCausalLM


def main():
    for spec in sys.argv[2:]:
        name, *rest = spec.split(":")
        make(os.path.join(sys.argv[1], name), *rest)


def make(out, n_embd, n_layer, n_head, rot, vocab, fmt, seed):
    n_embd, n_layer, n_head, rot, vocab, seed = map(int, (n_embd, n_layer, n_head, rot, vocab, seed))
    torch.manual_seed(seed)
    cfg = GPTJConfig(vocab_size=vocab, n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     rotary_dim=rot, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, tie_word_embeddings=False, bos_token_id=vocab - 1, eos_token_id=vocab - 1)
    model = GPTJForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_f.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5))
    mdir = os.path.join(out, "model")
    os.makedirs(mdir, exist_ok=True)
    save_weights(model, cfg, mdir, fmt)

    ref = {}
    captured = {}
    hooks = [model.transformer.wte.register_forward_hook(lambda m, i, o: captured.__setitem__("embed", o))]
    for l, blk in enumerate(model.transformer.h):
        hooks.append(blk.register_forward_hook(
            lambda m, i, o, l=l: captured.__setitem__(l, o[0] if isinstance(o, tuple) else o)))
    g = torch.Generator().manual_seed(seed + 1)
    prompts = [torch.randint(0, vocab, (n,), generator=g) for n in (5, 9, 13)]
    with torch.no_grad():
        for i, ids in enumerate(prompts):
            captured.clear()
            logits = model(ids[None]).logits[0]
            ref[f"ids.{i}"] = ids.clone()
            ref[f"logits.{i}"] = logits.float().contiguous()
            ref[f"embed.{i}"] = captured["embed"][0].float().contiguous()
            for l in range(n_layer):
                ref[f"resid.{i}.{l}"] = captured[l][0].float().contiguous()
        for h in hooks:
            h.remove()
        mh = copy.deepcopy(model).to(torch.float16)  # before the in-place bfloat16 cast below
        got16 = {}
        hooks = [blk.register_forward_hook(lambda m, i, o, l=l: got16.__setitem__(l, o[0] if isinstance(o, tuple) else o))
                 for l, blk in enumerate(mh.transformer.h)]
        for i, ids in enumerate(prompts):
            ref[f"f16.logits.{i}"] = mh(ids[None]).logits[0].float().contiguous()
            for l in range(n_layer):
                ref[f"f16.resid.{i}.{l}"] = got16[l][0].float().contiguous()
        for h in hooks:
            h.remove()
        del mh
        mb = model.to(torch.bfloat16)
        for i, ids in enumerate(prompts):
            ref[f"bf16.logits.{i}"] = mb(ids[None]).logits[0].float().contiguous()
    rdir = os.path.join(out, "ref")
    os.makedirs(rdir, exist_ok=True)
    save_file(ref, os.path.join(rdir, "model.safetensors"))


def save_weights(model, cfg, mdir, fmt):
    cfg.save_pretrained(mdir)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "st":
        save_file(sd, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})
    elif fmt in ("st-sharded", "bin-sharded"):
        keys = sorted(sd)
        shards = [keys[i::3] for i in range(3)]
        ext = "safetensors" if fmt == "st-sharded" else "bin"
        base = "model" if ext == "safetensors" else "pytorch_model"
        wmap = {}
        for j, ks in enumerate(shards):
            fname = f"{base}-{j + 1:05d}-of-{len(shards):05d}.{ext}"
            part = {k: sd[k] for k in ks}
            if ext == "safetensors":
                save_file(part, os.path.join(mdir, fname), metadata={"format": "pt"})
            else:
                torch.save(part, os.path.join(mdir, fname))
            wmap.update({k: fname for k in ks})
        with open(os.path.join(mdir, f"{base}.{ext}.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": wmap}, f)
    elif fmt == "bin":
        # old GPT-J checkpoints also carry the causal-mask buffers; the loader must ignore them
        sd["transformer.h.0.attn.bias"] = torch.tril(torch.ones(8, 8, dtype=torch.bool))
        sd["transformer.h.0.attn.masked_bias"] = torch.tensor(-1e9)
        torch.save(sd, os.path.join(mdir, "pytorch_model.bin"))
    else:
        raise SystemExit(f"unknown format {fmt}")


if __name__ == "__main__":
    main()
