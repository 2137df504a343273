package gptj

import (
	"errors"
	"math"

	"github.com/simplescope/simplescope/core/torch"
)

// The model's parts for callers that assemble their own passes over RunBlocks (core/patching):
// the embedding, the rotary angles and the head. Each works like a Scope op: the result belongs
// to s, a failure is recorded in s.

// Embed returns the embeddings (B, T, C) of ids (B, T) int64 at positions pos (B|1, T) int64:
// the token embedding (scaled for Gemma), plus the learned position embedding for a family that
// has one (GPT-2);
// a rotary family reads its positions through Angles instead and ignores pos.
func (m *Model) Embed(s *torch.Scope, ids, pos *torch.Tensor) *torch.Tensor {
	x := s.Embedding(m.wte, ids)
	if m.Cfg.Family.ScaleEmbed {
		// Gemma: × sqrt(hidden), the factor first rounded to the model dtype as HF does
		x = s.Mul(x, s.To(s.Full([]int64{1}, math.Sqrt(float64(m.Cfg.NEmbd)), torch.Float32, m.Device), m.DType, m.Device))
	}
	if m.wpe == nil {
		return x
	}
	if pos == nil {
		s.Fail(errors.New("gptj: Embed: this model has learned positions, pass the token positions"))
		return nil
	}
	return s.Add(x, s.Embedding(m.wpe, pos))
}

// Angles returns the rotary sin, cos (B, T, 1, rot/2) of positions pos (B, T) int64, as
// RunBlocks' Pass.Sin and Pass.Cos take them; nil, nil for a family without rotary embeddings.
func (m *Model) Angles(s *torch.Scope, pos *torch.Tensor) (sin, cos *torch.Tensor) {
	return m.rotary(s, pos)
}

// Logits returns the final norm then the unembedding of x (..., C) as float32 logits (..., V).
func (m *Model) Logits(s *torch.Scope, x *torch.Tensor) *torch.Tensor { return m.head(s, x) }

// Positions returns the positions (1, Len) int64 of the prefix's keys, as Pass.PastPos takes
// them, made in s on dev; nil for an empty prefix.
func (p *Prefix) Positions(s *torch.Scope, dev torch.Device) *torch.Tensor {
	if p == nil || p.Len == 0 {
		return nil
	}
	return s.Unsqueeze(s.Arange(0, int64(p.Len), torch.Int64, dev), 0)
}
