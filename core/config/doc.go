// Package config reads model configuration files (config.json in an HF model folder). It is
// pure Go, so that the engine, the C API and tools can describe a model before loading it.
//
// ReadGPTJConfig follows transformers' GPTJConfig defaults for optional fields, with two
// deliberate differences: the shape-defining fields (n_embd, n_layer, n_head, vocab_size) must
// be present (HF would silently default them to GPT-J 6B's values), and values HF would accept
// but could not run (n_embd not divisible by n_head, an odd rotary_dim or one larger than the
// head) are errors.
package config
