// Package gptj is GPT-J (HF modeling_gptj.py) in Go over the libtorch shim: loading a checkpoint
// straight into the requested dtype and device, the forward pass with residual access at
// requested positions, and a K/V cache for prefixes that later single-position runs attend to.
//
// Site names follow TransformerLens: hook_embed is the embedding output and
// blocks.{l}.hook_resid_post the output of block l (0-based), i.e. the residual stream after it.
package gptj
