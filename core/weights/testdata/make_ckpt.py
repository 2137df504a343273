"""Write test checkpoints for core/weights, and a manifest of what Python reads back from them.

usage: make_ckpt.py OUTDIR FORMAT[,FORMAT...]    (FORMAT "all" = every test format)
       make_ckpt.py OUTDIR big N_EMBD N_LAYER    (benchmark model: OUTDIR/st and OUTDIR/bin)
       make_ckpt.py OUTDIR seeds                 (tiny files for the fuzz seed corpora)

Test formats, each written to OUTDIR/<format>/ with manifest.json = {name: {dtype, shape, sha256}}
where sha256 is over tensor.contiguous() bytes (bf16 and bool are viewed as raw bytes), read
back with safetensors.safe_open or torch.load, independently of the Go code:
  st           tiny GPT-J, save_pretrained (one model.safetensors)
  st-sharded   the same model, max_shard_size small → model-0000k-of-0000n.safetensors + index
  bin          the same model's state dict plus the attn.bias / attn.masked_bias buffers old
               GPT-J checkpoints carry, torch.save → pytorch_model.bin
  bin-sharded  the same, split over pytorch_model-0000k-of-0000n.bin + pytorch_model.bin.index.json
  views        torch.save of a dict of many dtypes, views with a storage offset, tensors sharing
               a storage, a transpose (non-contiguous), a Parameter, a scalar, an empty tensor
  views-p4     the views dict saved with pickle_protocol=4 (FRAME, MEMOIZE, STACK_GLOBAL opcodes)
  st-dtypes    the views dict (made contiguous) saved with safetensors.torch.save_file
  cache        HF cache layout of "bin": models--test--tiny-gptj/{blobs,refs/main,snapshots/<rev>}
"""
import collections
import hashlib
import json
import os
import shutil
import sys

import torch

SAFETENSORS_DTYPE = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def tensor_entry(t):
    raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return {"dtype": SAFETENSORS_DTYPE[t.dtype], "shape": list(t.shape), "sha256": hashlib.sha256(raw).hexdigest()}


def write_manifest(outdir, tensors):
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump({k: tensor_entry(v) for k, v in tensors.items()}, f, indent=1, sort_keys=True)


def read_back_safetensors(outdir):
    from safetensors import safe_open
    out = {}
    for name in sorted(os.listdir(outdir)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(outdir, name), framework="pt") as f:
                for k in f.keys():
                    out[k] = f.get_tensor(k)
    return out


def read_back_bin(outdir):
    out = {}
    for name in sorted(os.listdir(outdir)):
        if name.endswith(".bin"):
            # Our own files; torch's weights_only loader rejects the protocol-4 FRAME opcode.
            out.update(torch.load(os.path.join(outdir, name), weights_only=False, map_location="cpu"))
    return out


def tiny_gptj(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, vocab=101):
    from transformers import GPTJConfig, GPTJForCausalLM
    torch.manual_seed(0)
    cfg = GPTJConfig(n_embd=n_embd, n_layer=n_layer, n_head=n_head, rotary_dim=rotary_dim,
                     vocab_size=vocab, n_positions=64, bos_token_id=0, eos_token_id=0)
    return GPTJForCausalLM(cfg).eval()


def gptj_state_dict_with_buffers(model):
    """The state dict as old GPT-J checkpoints have it, with the causal-mask buffers."""
    sd = collections.OrderedDict()
    n_pos = model.config.n_positions
    mask = torch.tril(torch.ones((n_pos, n_pos), dtype=torch.bool)).view(1, 1, n_pos, n_pos)
    for k, v in model.state_dict().items():
        sd[k] = v
        if k.endswith("attn.k_proj.weight"):
            prefix = k[: -len("k_proj.weight")]
            sd[prefix + "bias"] = mask
            sd[prefix + "masked_bias"] = torch.tensor(-1e9)
    return sd


def save_bin_sharded(sd, outdir, n_shards):
    keys = list(sd.keys())
    per = (len(keys) + n_shards - 1) // n_shards
    weight_map = {}
    for i in range(n_shards):
        name = f"pytorch_model-{i + 1:05d}-of-{n_shards:05d}.bin"
        part = collections.OrderedDict((k, sd[k]) for k in keys[i * per:(i + 1) * per])
        torch.save(part, os.path.join(outdir, name))
        weight_map.update({k: name for k in part})
    index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in sd.values())},
             "weight_map": weight_map}
    with open(os.path.join(outdir, "pytorch_model.bin.index.json"), "w") as f:
        json.dump(index, f, indent=1)


def views_dict():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(6, 8, generator=g)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 5, generator=g)
    sd["f16"] = torch.randn(4, 3, generator=g).half()
    sd["bf16"] = torch.randn(2, 7, generator=g).bfloat16()
    sd["f64"] = torch.randn(5, generator=g).double()
    sd["i64"] = torch.randint(-2**40, 2**40, (3, 2), generator=g)
    sd["i32"] = torch.randint(-1000, 1000, (4,), generator=g, dtype=torch.int32)
    sd["i16"] = torch.randint(-1000, 1000, (4,), generator=g, dtype=torch.int16)
    sd["i8"] = torch.randint(-100, 100, (4,), generator=g, dtype=torch.int8)
    sd["u8"] = torch.randint(0, 255, (2, 2), generator=g, dtype=torch.uint8)
    sd["bool"] = torch.rand(3, 3, generator=g) > 0.5
    sd["scalar"] = torch.tensor(3.25)
    sd["empty"] = torch.zeros(0, 4)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd["base"] = base                     # shares its storage with the views below
    sd["rows_2_4"] = base[2:4]            # storage offset 16, contiguous
    sd["row_5"] = base[5]                 # storage offset 40
    sd["reshaped"] = base.view(4, 12)     # same storage, another shape
    sd["transposed"] = base.t()           # non-contiguous
    sd["col_3"] = base[:, 3]              # non-contiguous, offset 3
    sd["expanded"] = torch.randn(1, 3, generator=g).expand(4, 3)  # stride 0
    sd["big_offset"] = torch.arange(300, dtype=torch.int64)[257:260]  # offset > 255 (BININT2)
    return sd


def main():
    outdir = sys.argv[1]
    what = sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    if what == "big":
        n_embd, n_layer = int(sys.argv[3]), int(sys.argv[4])
        model = tiny_gptj(n_embd=n_embd, n_layer=n_layer, n_head=16, rotary_dim=64, vocab=50400)
        model.save_pretrained(os.path.join(outdir, "st"))
        os.makedirs(os.path.join(outdir, "bin"), exist_ok=True)
        model.config.save_pretrained(os.path.join(outdir, "bin"))
        torch.save(model.state_dict(), os.path.join(outdir, "bin", "pytorch_model.bin"))
        return
    if what == "seeds":
        from safetensors.torch import save_file
        sd = collections.OrderedDict(a=torch.arange(6, dtype=torch.float32).view(2, 3))
        base = torch.arange(4, dtype=torch.int16)
        sd["b"], sd["c"], sd["d"] = base[1:3], base.view(2, 2).t(), torch.ones(1, dtype=torch.bfloat16)
        torch.save(sd, os.path.join(outdir, "seed.bin"))
        save_file({k: v.clone().contiguous() for k, v in sd.items()}, os.path.join(outdir, "seed.safetensors"),
                  metadata={"format": "pt"})
        import zipfile
        with zipfile.ZipFile(os.path.join(outdir, "seed.bin")) as z:
            pkl = z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0])
        seeds = {"FuzzTorchZip": os.path.join(outdir, "seed.bin"),
                 "FuzzSafetensorsHeader": os.path.join(outdir, "seed.safetensors")}
        for fuzz, path in list(seeds.items()) + [("FuzzUnpickle", None)]:
            raw = pkl if path is None else open(path, "rb").read()
            os.makedirs(os.path.join(outdir, "fuzz", fuzz), exist_ok=True)
            lit = "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else "\\x%02x" % b for b in raw)
            with open(os.path.join(outdir, "fuzz", fuzz, "seed_torch"), "w") as f:
                f.write('go test fuzz v1\n[]byte("' + lit + '")\n')
        return
    formats = what.split(",")
    if formats == ["all"]:
        formats = ["st", "st-sharded", "bin", "bin-sharded", "views", "views-p4", "st-dtypes", "cache"]
    model = tiny_gptj()
    for fmt in formats:
        d = os.path.join(outdir, fmt)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        if fmt == "st":
            model.save_pretrained(d)
            write_manifest(d, read_back_safetensors(d))
        elif fmt == "st-sharded":
            model.save_pretrained(d, max_shard_size="20KB")
            write_manifest(d, read_back_safetensors(d))
        elif fmt == "bin":
            model.config.save_pretrained(d)
            torch.save(gptj_state_dict_with_buffers(model), os.path.join(d, "pytorch_model.bin"))
            write_manifest(d, read_back_bin(d))
        elif fmt == "bin-sharded":
            model.config.save_pretrained(d)
            save_bin_sharded(gptj_state_dict_with_buffers(model), d, 3)
            write_manifest(d, read_back_bin(d))
        elif fmt == "views":
            torch.save(views_dict(), os.path.join(d, "pytorch_model.bin"))
            write_manifest(d, read_back_bin(d))
        elif fmt == "views-p4":
            torch.save(views_dict(), os.path.join(d, "pytorch_model.bin"), pickle_protocol=4)
            write_manifest(d, read_back_bin(d))
        elif fmt == "st-dtypes":
            from safetensors.torch import save_file
            save_file({k: v.detach().clone().contiguous() for k, v in views_dict().items()}, os.path.join(d, "model.safetensors"))
            write_manifest(d, read_back_safetensors(d))
        elif fmt == "cache":
            src = os.path.join(d, "src")
            os.makedirs(src)
            model.config.save_pretrained(src)
            torch.save(gptj_state_dict_with_buffers(model), os.path.join(src, "pytorch_model.bin"))
            write_manifest(d, read_back_bin(src))
            repo = os.path.join(d, "models--test--tiny-gptj")
            rev = "0123456789abcdef0123456789abcdef01234567"
            snap = os.path.join(repo, "snapshots", rev)
            os.makedirs(os.path.join(repo, "blobs"))
            os.makedirs(snap)
            os.makedirs(os.path.join(repo, "refs"))
            with open(os.path.join(repo, "refs", "main"), "w") as f:
                f.write(rev)
            for name in os.listdir(src):
                with open(os.path.join(src, name), "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                shutil.move(os.path.join(src, name), os.path.join(repo, "blobs", digest))
                os.symlink(os.path.join("..", "..", "blobs", digest), os.path.join(snap, name))
            os.rmdir(src)
        else:
            sys.exit(f"unknown format {fmt!r}")


if __name__ == "__main__":
    main()
