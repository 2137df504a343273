// Package gptj is the decoder in Go over the libtorch shim: GPT-J (HF modeling_gptj.py), where it
// began, and the other decoder families (GPT-NeoX, GPT-2, Llama, Mistral, Qwen2, Qwen3, Gemma) as
// data: a Family (family.go) is the choices that set one apart (norm, rotary, QKV layout, MLP,
// residual, q/k norm, weight names) and one blockForward reads it. It loads a checkpoint straight
// into the requested dtype and device, runs the forward pass with residual access at requested
// positions, and keeps a K/V cache for prefixes that later single-position runs attend to. (The
// package keeps its first name: renaming it would touch every caller for no change in behaviour.)
//
// Every pass — Forward, ComputePrefix, Continue — is one call of RunBlocks, the single loop over
// the blocks, given its inputs as a Pass: the residual entering a range of blocks, rotary angles,
// an optional mask, an optional past K/V, whether to collect this pass's K/V, and optional hooks
// that read or replace the residual before and after each block. Families with sliding windows
// also read the pass's positions (Pass.Pos, Pass.PastPos); grouped-query attention keeps the
// K/V cache at the key/value head count and repeats heads only inside attention.
//
// Site names follow TransformerLens: hook_embed is the embedding output and
// blocks.{l}.hook_resid_post the output of block l (0-based), i.e. the residual stream after it.
package gptj
