"""Tiny random models of every supported family, made by HF transformers, with HF's outputs beside them.

usage: hf_families.py OUTDIR [NAME ...]     (no NAME: every case in CASES)

For each case writes OUTDIR/NAME/model (config.json + model.safetensors, as the case's layout says) and
OUTDIR/NAME/ref/model.safetensors with, for each prompt i (random ids, lengths 5, 9, 13):
  ids.{i}        int64 (T,)
  logits.{i}     float32 (T, V)     the causal LM, float32, CPU, unpadded
  embed.{i}      float32 (T, C)     the input of the first block (hook_embed; GPT-2: token + position embedding)
  resid.{i}.{l}  float32 (T, C)     the output of block l (blocks.l.hook_resid_post), via hooks
  bf16.logits.{i} float32 (T, V)    the same model cast to bfloat16 (logits upcast)
Weights are re-drawn with a larger scale than HF's init (std 0.02 makes every block nearly the identity),
so that the comparison exercises attention, rotary, the norms and the MLP.

The cases (CASES) cover what sets the families apart: NeoX's rotary_pct = 0.25, fused per-head QKV and
both residual forms; GPT-2's learned positions, Conv1D weights, tied head and a base-model checkpoint
without the "transformer." prefix (the Hub's layout); grouped-query attention (num_key_value_heads <
num_attention_heads); Llama 3 rope scaling; Llama biases with the Hub's rope_theta / rope_scaling config
layout; a Mistral sliding window shorter than the prompts; Qwen2 QKV biases, a tied head and windows on the
upper layers from the Hub's use_sliding_window / max_window_layers (layer_types removed); Qwen3 q/k norms with
head_dim != hidden / heads; Gemma's (1 + w) RMSNorm, scaled embedding, GeGLU (the legacy hidden_act "gelu"
meaning its tanh approximation) and multi-query attention. pytest (tests/python/test_families.py) imports this module for the same models.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

SMALL = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96, vocab_size=300,
             max_position_embeddings=64)

# name -> (model_type, config kwargs, layout): layout "t5" keeps what transformers 5 writes; "hub" rewrites
# config.json the way older checkpoints on the Hub have it; "base" also stores the base model's names
# without their prefix.
CASES = {
    "neox": ("gpt_neox", dict(SMALL, rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True,
                              tie_word_embeddings=False, hidden_act="gelu"), "t5"),
    "neox-seq": ("gpt_neox", dict(SMALL, rotary_pct=0.5, use_parallel_residual=False, tie_word_embeddings=True,
                                  hidden_act="gelu_new"), "hub"),
    "gpt2": ("gpt2", dict(n_embd=64, n_layer=3, n_head=4, vocab_size=300, n_positions=64), "base"),
    "gpt2-scaled": ("gpt2", dict(n_embd=64, n_layer=3, n_head=4, vocab_size=300, n_positions=64, n_inner=80,
                                 scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True,
                                 tie_word_embeddings=False), "t5"),
    "llama3": ("llama", dict(SMALL, num_key_value_heads=2, rope_theta=500000.0, tie_word_embeddings=True,
                             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 16}), "t5"),
    "llama-bias": ("llama", dict(SMALL, num_key_value_heads=1, attention_bias=True, mlp_bias=True,
                                 rope_theta=1000.0, rope_scaling={"type": "linear", "factor": 2.0}), "hub"),
    "mistral": ("mistral", dict(SMALL, num_key_value_heads=2, sliding_window=4), "t5"),
    "qwen2": ("qwen2", dict(SMALL, num_key_value_heads=2, use_sliding_window=True, sliding_window=3,
                            max_window_layers=1, tie_word_embeddings=True, rope_theta=1000000.0), "hub"),
    "qwen3": ("qwen3", dict(SMALL, num_key_value_heads=2, head_dim=24, tie_word_embeddings=False), "t5"),
    "gemma": ("gemma", dict(SMALL, num_key_value_heads=1, head_dim=32, hidden_act="gelu"), "hub"),
}

PROMPT_LENS = (5, 9, 13)


def config_for(model_type, kw):
    import transformers
    cls = {"gpt_neox": transformers.GPTNeoXConfig, "gpt2": transformers.GPT2Config,
           "llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig,
           "qwen2": transformers.Qwen2Config, "qwen3": transformers.Qwen3Config,
           "gemma": transformers.GemmaConfig}[model_type]
    kw = dict(kw)
    if model_type == "gpt2":
        kw.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    kw.setdefault("bos_token_id", kw.get("vocab_size", 300) - 1)
    kw.setdefault("eos_token_id", kw.get("vocab_size", 300) - 1)
    return cls(**kw)


def redraw(model, seed):
    """Norm weights 1 + N(0, 0.2), other vectors (biases) N(0, 0.1), matrices N(0, 1/fan_in)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or ".ln_" in name or name.startswith("ln_")) and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / (min(p.shape) ** 0.5))


def build(name, seed=7):
    """The HF model of case name (float32, eval mode, random weights)."""
    from transformers import AutoModelForCausalLM
    model_type, kw, _ = CASES[name]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config_for(model_type, kw), attn_implementation="eager").eval()
    redraw(model, seed)
    return model


def layers(model):
    """The model's decoder blocks (transformer.h, gpt_neox.layers or model.layers)."""
    base = getattr(model, model.base_model_prefix)
    return base.h if hasattr(base, "h") else base.layers


def save(name, model, mdir):
    """Writes the model in the case's layout."""
    _, _, layout = CASES[name]
    model.save_pretrained(mdir, safe_serialization=True)
    cpath = os.path.join(mdir, "config.json")
    with open(cpath) as f:
        cfg = json.load(f)
    if layout == "hub":
        # the Hub's layout: rope settings at the top level, no layer_types
        rp = cfg.pop("rope_parameters", None) or {}
        cfg.pop("layer_types", None)
        if cfg["model_type"] == "gpt_neox":
            cfg["rotary_pct"] = rp.get("partial_rotary_factor", 0.25)
            cfg["rotary_emb_base"] = rp.get("rope_theta", 10000)
        else:
            cfg["rope_theta"] = rp.pop("rope_theta", 10000.0)
            if rp.get("rope_type", "default") != "default":
                rp["type"] = rp.pop("rope_type")
                cfg["rope_scaling"] = rp
    with open(cpath, "w") as f:
        json.dump(cfg, f, indent=2)
    if layout == "base":
        # the base model's names only (GPT-2 on the Hub: wte.weight, h.0.attn.c_attn.weight, …)
        prefix = model.base_model_prefix + "."
        from safetensors.torch import load_file
        sd = load_file(os.path.join(mdir, "model.safetensors"))
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        save_file(sd, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})


def prompts(model, seed):
    g = torch.Generator().manual_seed(seed + 1)
    return [torch.randint(0, model.config.vocab_size, (n,), generator=g) for n in PROMPT_LENS]


def make(out, name, seed=7):
    model = build(name, seed)
    mdir = os.path.join(out, "model")
    os.makedirs(mdir, exist_ok=True)
    save(name, model, mdir)
    ref = {}
    captured = {}
    blocks = layers(model)

    def pre(_m, args, kwargs):
        captured["embed"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    hooks = [blocks[0].register_forward_pre_hook(pre, with_kwargs=True)]
    for l, blk in enumerate(blocks):
        hooks.append(blk.register_forward_hook(
            lambda m, i, o, l=l: captured.__setitem__(l, (o[0] if isinstance(o, tuple) else o).detach().clone())))
    with torch.no_grad():
        for i, ids in enumerate(prompts(model, seed)):
            captured.clear()
            logits = model(ids[None]).logits[0]
            ref[f"ids.{i}"] = ids.clone()
            ref[f"logits.{i}"] = logits.float().contiguous()
            ref[f"embed.{i}"] = captured["embed"][0].float().contiguous()
            for l in range(len(blocks)):
                ref[f"resid.{i}.{l}"] = captured[l][0].float().contiguous()
    for h in hooks:
        h.remove()
    mb = model.to(torch.bfloat16)
    with torch.no_grad():
        for i, ids in enumerate(prompts(model, seed)):
            ref[f"bf16.logits.{i}"] = mb(ids[None]).logits[0].float().contiguous()
    rdir = os.path.join(out, "ref")
    os.makedirs(rdir, exist_ok=True)
    save_file(ref, os.path.join(rdir, "model.safetensors"))


def main():
    torch.set_num_threads(1)
    out = sys.argv[1]
    for name in sys.argv[2:] or list(CASES):
        make(os.path.join(out, name), name)


if __name__ == "__main__":
    main()
