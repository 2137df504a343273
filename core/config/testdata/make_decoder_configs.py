"""Write config.json files of every supported family in both layouts and what transformers makes of them.

usage: make_decoder_configs.py OUTDIR
For each case, OUTDIR/<case>/hub/config.json is the config as published on the Hub (rope_theta, rope_scaling,
rotary_pct, rotary_emb_base, use_sliding_window, …; the real files of the models named, trimmed of fields
nothing reads) and OUTDIR/<case>/t5/config.json what transformers 5's save_pretrained writes after reading it
(rope_parameters, layer_types). OUTDIR/<case>/expected.json holds what transformers does with it, in the
field names of config.Decoder: sizes from the config object, biases and sliding windows from the modules of
the model built on the meta device (no memory), the rotary size from the rope parameters.
"""
import json
import os
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM

HUB = {
    "pythia-160m": {"architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu",
                    "hidden_size": 768, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
                    "max_position_embeddings": 2048, "model_type": "gpt_neox", "num_attention_heads": 12,
                    "num_hidden_layers": 12, "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": False,
                    "use_parallel_residual": True, "vocab_size": 50304},
    "gpt2": {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "bos_token_id": 50256,
             "eos_token_id": 50256, "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768,
             "n_head": 12, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257},
    "gpt2-crfm": {"activation_function": "gelu_new", "model_type": "gpt2", "n_embd": 768, "n_head": 12, "n_layer": 12,
                  "n_positions": 1024, "vocab_size": 50257, "scale_attn_by_inverse_layer_idx": True,
                  "reorder_and_upcast_attn": True, "n_inner": None},
    "llama-2-7b": {"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
                   "hidden_size": 4096, "intermediate_size": 11008, "max_position_embeddings": 4096,
                   "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
                   "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False,
                   "vocab_size": 32000},
    "vicuna-7b-v1.3": {"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
                       "hidden_size": 4096, "intermediate_size": 11008, "max_position_embeddings": 2048,
                       "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "rms_norm_eps": 1e-06,
                       "tie_word_embeddings": False, "vocab_size": 32000},
    "llama-3.1-8b": {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 128000,
                     "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
                     "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
                     "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
                     "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 8192, "rope_type": "llama3"},
                     "rope_theta": 500000.0, "tie_word_embeddings": False, "vocab_size": 128256},
    "llama-3.2-1b": {"architectures": ["LlamaForCausalLM"], "bos_token_id": 128000,
                     "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu",
                     "hidden_size": 2048, "intermediate_size": 8192, "max_position_embeddings": 131072,
                     "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
                     "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0,
                                                             "low_freq_factor": 1.0,
                                                             "original_max_position_embeddings": 8192,
                                                             "rope_type": "llama3"},
                     "rope_theta": 500000.0, "tie_word_embeddings": True, "vocab_size": 128256},
    "mistral-7b-v0.1": {"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
                        "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
                        "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
                        "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
                        "sliding_window": 4096, "tie_word_embeddings": False, "vocab_size": 32000},
    "mistral-7b-instruct-v0.2": {"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
                                 "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
                                 "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
                                 "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
                                 "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False,
                                 "vocab_size": 32000},
    "qwen2.5-0.5b": {"architectures": ["Qwen2ForCausalLM"], "bos_token_id": 151643, "eos_token_id": 151643,
                     "hidden_act": "silu", "hidden_size": 896, "intermediate_size": 4864,
                     "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2",
                     "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
                     "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
                     "use_sliding_window": False, "vocab_size": 151936},
    "qwen2-windowed": {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "max_window_layers": 20,
                       "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
                       "rope_theta": 1000000.0, "sliding_window": 4096, "use_sliding_window": True,
                       "vocab_size": 151936},
    "qwen3-0.6b": {"architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "bos_token_id": 151643,
                   "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024,
                   "intermediate_size": 3072, "max_position_embeddings": 40960, "max_window_layers": 28,
                   "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
                   "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None,
                   "tie_word_embeddings": True, "use_sliding_window": False, "vocab_size": 151936},
    "gemma-2b": {"architectures": ["GemmaForCausalLM"], "attention_bias": False, "bos_token_id": 2, "eos_token_id": 1,
                 "head_dim": 256, "hidden_act": "gelu", "hidden_size": 2048, "intermediate_size": 16384,
                 "max_position_embeddings": 8192, "model_type": "gemma", "num_attention_heads": 8,
                 "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0, "rms_norm_eps": 1e-06,
                 "rope_scaling": None, "rope_theta": 10000.0, "vocab_size": 256000},
}


def tok(v):
    if isinstance(v, list):
        v = v[0] if v else None
    return -1 if v is None else v


def expected(c):
    mt = c.model_type
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(c)
    base = getattr(model, model.base_model_prefix)
    layers = base.h if hasattr(base, "h") else base.layers
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    inner = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * c.hidden_size
    rp = getattr(c, "rope_parameters", None) or {}
    e = {
        "ModelType": mt, "Hidden": c.hidden_size, "Layers": c.num_hidden_layers, "Heads": heads,
        "KVHeads": getattr(c, "num_key_value_heads", None) or heads, "HeadDim": head_dim, "Inner": inner,
        "Vocab": c.vocab_size, "Positions": c.max_position_embeddings,
        "NormEps": next(getattr(c, k) for k in ("layer_norm_eps", "layer_norm_epsilon", "rms_norm_eps") if hasattr(c, k)),
        "Activation": getattr(c, "hidden_act", None) or c.activation_function,
        "Tied": bool(c.tie_word_embeddings), "BOS": tok(c.bos_token_id), "EOS": tok(c.eos_token_id),
        "ParallelResidual": bool(getattr(c, "use_parallel_residual", False)),
        "AttnScale": None,
    }
    blk = layers[0]
    if mt == "gpt2":
        e.update(RotaryDim=0, RopeTheta=0, Rope={"Type": "default"}, QKVBias=blk.attn.c_attn.bias is not None,
                 OutBias=blk.attn.c_proj.bias is not None, MLPBias=blk.mlp.c_fc.bias is not None)
        e["Windows"] = [0] * c.num_hidden_layers
        if not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx:
            e["AttnScale"] = [layers[l].attn.scaling * head_dim ** 0.5 for l in range(c.num_hidden_layers)]
    else:
        e["RotaryDim"] = int(head_dim * rp.get("partial_rotary_factor", 1.0))
        e["RopeTheta"] = rp["rope_theta"]
        r = {"Type": rp.get("rope_type", "default")}
        if r["Type"] in ("linear", "llama3"):
            r["Factor"] = rp["factor"]
        if r["Type"] == "llama3":
            r.update(LowFreqFactor=rp["low_freq_factor"], HighFreqFactor=rp["high_freq_factor"],
                     OriginalMaxPositions=rp["original_max_position_embeddings"])
        e["Rope"] = r
        if mt == "gpt_neox":
            a = blk.attention
            e.update(QKVBias=a.query_key_value.bias is not None, OutBias=a.dense.bias is not None,
                     MLPBias=blk.mlp.dense_h_to_4h.bias is not None)
            assert a.rotary_ndims == e["RotaryDim"]
        else:
            a = blk.self_attn
            e.update(QKVBias=a.q_proj.bias is not None, OutBias=a.o_proj.bias is not None,
                     MLPBias=blk.mlp.up_proj.bias is not None)
        if mt == "mistral":
            e["Windows"] = [c.sliding_window or 0] * c.num_hidden_layers
        else:
            e["Windows"] = [getattr(l.self_attn, "sliding_window", None) or 0 if hasattr(l, "self_attn") else 0
                            for l in layers]
    return e


def main():
    out = sys.argv[1]
    for name, cfg in HUB.items():
        hub = os.path.join(out, name, "hub")
        os.makedirs(hub, exist_ok=True)
        with open(os.path.join(hub, "config.json"), "w") as f:
            json.dump(cfg, f)
        c = AutoConfig.from_pretrained(hub)
        c.save_pretrained(os.path.join(out, name, "t5"))
        c5 = AutoConfig.from_pretrained(os.path.join(out, name, "t5"))
        e = expected(c)
        assert e == expected(c5), (name, e, expected(c5))
        with open(os.path.join(out, name, "expected.json"), "w") as f:
            json.dump(e, f, indent=1)


if __name__ == "__main__":
    main()
