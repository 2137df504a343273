"""Reference patching and generation with HF transformers forward hooks, the way the Patchscopes
paper's code patches: a hook on block `layer` (`transformer.h[layer]` in GPT-J and GPT-2,
`gpt_neox.layers[layer]` in NeoX, `model.layers[layer]` in Llama, Mistral and Qwen) replaces
`output[0][row, position]` (the block output, `resid_post`), or a pre-hook replaces the block input
(`resid_pre`); generation runs HF `generate` with the hook active for the prompt pass only.
Independent of simplescope: it only uses torch and transformers, one row at a time (no padding),
so nothing about batching is shared.
"""
from __future__ import annotations

import contextlib

import torch


def blocks(hf):
    """The decoder blocks of an HF causal LM of any family (base model's `h` or `layers`)."""
    base = getattr(hf, hf.base_model_prefix)
    return base.h if hasattr(base, "h") else base.layers


@contextlib.contextmanager
def patched(hf, layer: int, positions, vector, site: str = "resid_post", once: bool = False):
    """Within the block, the residual at `positions` (of batch row 0) of block `layer`'s output
    (resid_post) or input (resid_pre) is `vector`. once=True: only the first forward call is
    patched (the prompt pass of `generate`; later calls are one-token decode steps)."""
    block = blocks(hf)[layer]
    calls = {"n": 0}
    vec = vector.detach().to(hf.dtype)

    def write(h):
        h = h.clone()
        for p in positions:
            h[0, p] = vec
        return h

    def post_hook(_mod, _args, output):
        calls["n"] += 1
        if once and calls["n"] > 1:
            return output
        if isinstance(output, tuple):
            return (write(output[0]),) + tuple(output[1:])
        return write(output)

    def pre_hook(_mod, args, kwargs):
        calls["n"] += 1
        if once and calls["n"] > 1:
            return args, kwargs
        if args:
            return (write(args[0]),) + tuple(args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = write(kwargs["hidden_states"])
        return args, kwargs

    if site == "resid_post":
        handle = block.register_forward_hook(post_hook)
    elif site == "resid_pre":
        handle = block.register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:
        raise ValueError(site)
    try:
        yield
    finally:
        handle.remove()


def block_output(hf, ids, layer: int, position: int):
    """The output of block `layer` (resid_post, before ln_f for the last block) at `position`."""
    got = {}

    def hook(_mod, _args, output):
        got["h"] = (output[0] if isinstance(output, tuple) else output)[0, position].detach().clone()

    handle = blocks(hf)[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            hf(torch.tensor([ids]))
    finally:
        handle.remove()
    return got["h"]


def patch_logits(hf, target, vector, layer, positions, site="resid_post"):
    """Next-token logits [vocab] at the last position of `target` with `vector` patched."""
    with torch.no_grad(), patched(hf, layer, positions, vector, site):
        return hf(torch.tensor([target])).logits[0, -1].float()


def generate_tokens(hf, target, max_new_tokens, vector=None, layer=None, positions=(), site="resid_post",
                    eos=50256):
    """Greedy new tokens (EOS excluded) after `target`, with the patch in the prompt pass only."""
    ids = torch.tensor([target])
    ctx = patched(hf, layer, positions, vector, site, once=True) if vector is not None else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                          do_sample=False, eos_token_id=eos, pad_token_id=eos)
    new = out[0, len(target):].tolist()
    if eos in new:
        new = new[:new.index(eos)]
    return new
