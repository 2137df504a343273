package gptj

import "github.com/simplescope/simplescope/core/torch"

// The model's parts for callers that assemble their own passes over RunBlocks (core/patching):
// the embedding, the rotary angles and the head. Each works like a Scope op: the result belongs
// to s, a failure is recorded in s.

// Embed returns the token embeddings (B, T, C) of ids (B, T) int64.
func (m *Model) Embed(s *torch.Scope, ids *torch.Tensor) *torch.Tensor {
	return s.Embedding(m.wte, ids)
}

// Angles returns the rotary sin, cos (B, T, 1, rot/2) of positions pos (B, T) int64, as
// RunBlocks' Pass.Sin and Pass.Cos take them.
func (m *Model) Angles(s *torch.Scope, pos *torch.Tensor) (sin, cos *torch.Tensor) {
	return m.rotary(s, pos)
}

// Logits returns ln_f then lm_head of x (..., C) as float32 logits (..., V).
func (m *Model) Logits(s *torch.Scope, x *torch.Tensor) *torch.Tensor { return m.head(s, x) }
