// Package gptj is GPT-J (HF modeling_gptj.py) in Go over the libtorch shim: loading a checkpoint
// straight into the requested dtype and device, the forward pass with residual access at
// requested positions, and a K/V cache for prefixes that later single-position runs attend to.
//
// Every pass — Forward, ComputePrefix, Continue — is one call of RunBlocks, the single loop over
// the blocks, given its inputs as a Pass: the residual entering a range of blocks, rotary angles,
// an optional mask, an optional past K/V, whether to collect this pass's K/V, and optional hooks
// that read or replace the residual before and after each block.
//
// Site names follow TransformerLens: hook_embed is the embedding output and
// blocks.{l}.hook_resid_post the output of block l (0-based), i.e. the residual stream after it.
package gptj
