package gptj

import (
	"context"
	"fmt"
	"sort"

	"github.com/simplescope/simplescope/core/errs"
	"github.com/simplescope/simplescope/core/torch"
)

// Point is a (sequence, position) pair in a batch.
type Point struct{ Seq, Pos int }

// Request says what a forward pass keeps. Only requested rows are gathered, so a pass over long
// documents keeps a few vectors per layer instead of every position.
type Request struct {
	// Resid[l] lists the points whose residual after block l (hook_resid_post) to keep;
	// l = -1 is hook_embed.
	Resid map[int][]Point
	// LogitPoints lists the points whose final logits to compute (float32).
	LogitPoints []Point
	// Full keeps every position: all residuals (B, T, C) and logits (B, T, V).
	Full bool
	// LeftPad pads sequences on the left instead of the right (positions stay 0..len-1 per
	// sequence either way).
	LeftPad bool
}

// Output holds what Request asked for. The caller closes it.
type Output struct {
	Resid  map[int]*torch.Tensor // layer -> (len(points), C), or (B, T, C) when Full
	Logits *torch.Tensor         // (len(LogitPoints), V) or (B, T, V) when Full; float32
	T      int                   // padded length
	Offset []int                 // per sequence: index of its token 0 in the padded batch
}

// Close frees the output tensors.
func (o *Output) Close() {
	if o == nil {
		return
	}
	for _, t := range o.Resid {
		t.Close()
	}
	o.Logits.Close()
}

// batchInput holds a padded batch on the device.
type batchInput struct {
	B, T   int
	ids    *torch.Tensor // (B, T) int64
	pos    *torch.Tensor // (B, T) int64
	mask   *torch.Tensor // (B, 1, T, T) bool, true = may attend
	offset []int
}

func (m *Model) prepare(s *torch.Scope, seqs [][]int, leftPad bool) (*batchInput, error) {
	if len(seqs) == 0 {
		return nil, errs.Input("gptj: empty batch")
	}
	T := 0
	for i, q := range seqs {
		if len(q) == 0 {
			return nil, errs.Input("gptj: sequence %d is empty", i)
		}
		if len(q) > m.Cfg.NPositions {
			return nil, errs.Input("gptj: sequence %d has %d tokens, more than the model's context of %d", i, len(q), m.Cfg.NPositions)
		}
		for j, id := range q {
			if id < 0 || id >= m.Cfg.VocabSize {
				return nil, errs.Input("gptj: sequence %d token %d: id %d out of range [0, %d)", i, j, id, m.Cfg.VocabSize)
			}
		}
		T = max(T, len(q))
	}
	B := len(seqs)
	ids := make([]int64, B*T)
	pos := make([]int64, B*T)
	valid := make([]bool, B*T)
	offset := make([]int, B)
	for b, q := range seqs {
		off := 0
		if leftPad {
			off = T - len(q)
		}
		offset[b] = off
		for j, id := range q {
			ids[b*T+off+j] = int64(id)
			pos[b*T+off+j] = int64(j)
			valid[b*T+off+j] = true
		}
	}
	vb := make([]uint8, B*T)
	for i, v := range valid {
		if v {
			vb[i] = 1
		}
	}
	in := &batchInput{B: B, T: T, offset: offset}
	in.ids = torch.ScopeFromSlice(s, ids, []int64{int64(B), int64(T)}, torch.Int64, m.Device)
	in.pos = torch.ScopeFromSlice(s, pos, []int64{int64(B), int64(T)}, torch.Int64, m.Device)
	// the (B, 1, T, T) mask is built on the device from the (B, T) validity
	in.mask = s.CausalMask(torch.ScopeFromSlice(s, vb, []int64{int64(B), int64(T)}, torch.Bool, m.Device))
	return in, s.Err()
}

// rotary returns sin, cos (B, T, 1, rot/2) for positions pos (B, T); nil, nil without rotary.
func (m *Model) rotary(s *torch.Scope, pos *torch.Tensor) (sin, cos *torch.Tensor) {
	if m.sincos == nil {
		return nil, nil
	}
	half := int64(m.Cfg.RotaryDim / 2)
	sc := s.Embedding(m.sincos, pos) // (B, T, rot)
	sin = s.Unsqueeze(s.Narrow(sc, -1, 0, half), 2)
	cos = s.Unsqueeze(s.Narrow(sc, -1, half, half), 2)
	return sin, cos
}

// head is the final norm then the unembedding, returning float32 logits.
func (m *Model) head(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
	y := s.Linear(m.norm(s, x, m.lnfW, m.lnfB), m.headW, m.headB)
	if m.DType != torch.Float32 {
		y = s.To(y, torch.Float32, m.Device)
	}
	return y
}

// rows gathers x (B, T, C) at the flat row indices idx (P) int64 -> (P, C).
func (m *Model) rows(s *torch.Scope, x, idx *torch.Tensor, in *batchInput) *torch.Tensor {
	return s.IndexSelect(s.Reshape(x, int64(in.B*in.T), -1), 0, idx)
}

// pointIndex uploads the flat row index (b·T + offset + pos) of every point a pass keeps — the
// residual points of each layer, then the logit points — in one transfer before the block loop,
// and returns a view per layer and the logit points' view (nil when there are none).
func (m *Model) pointIndex(s *torch.Scope, req Request, in *batchInput) (map[int]*torch.Tensor, *torch.Tensor) {
	layers := make([]int, 0, len(req.Resid))
	for l, pts := range req.Resid {
		if len(pts) > 0 {
			layers = append(layers, l)
		}
	}
	sort.Ints(layers)
	var idx []int64
	add := func(pts []Point) (start, n int64) {
		start = int64(len(idx))
		for _, p := range pts {
			idx = append(idx, int64(p.Seq*in.T+in.offset[p.Seq]+p.Pos))
		}
		return start, int64(len(pts))
	}
	type span struct{ start, n int64 }
	spans := map[int]span{}
	for _, l := range layers {
		a, n := add(req.Resid[l])
		spans[l] = span{a, n}
	}
	la, ln := add(req.LogitPoints)
	if len(idx) == 0 {
		return nil, nil
	}
	all := torch.ScopeFromSlice(s, idx, []int64{int64(len(idx))}, torch.Int64, m.Device)
	views := map[int]*torch.Tensor{}
	for l, sp := range spans {
		views[l] = s.Narrow(all, 0, sp.start, sp.n)
	}
	var logits *torch.Tensor
	if ln > 0 {
		logits = s.Narrow(all, 0, la, ln)
	}
	return views, logits
}

func (m *Model) checkPoints(seqs [][]int, pts []Point, what string) error {
	for _, p := range pts {
		if p.Seq < 0 || p.Seq >= len(seqs) {
			return errs.Input("gptj: %s: sequence %d out of range [0, %d)", what, p.Seq, len(seqs))
		}
		if p.Pos < 0 || p.Pos >= len(seqs[p.Seq]) {
			return errs.Input("gptj: %s: position %d out of range for sequence %d of length %d", what, p.Pos, p.Seq, len(seqs[p.Seq]))
		}
	}
	return nil
}

// Forward runs the model on a batch of token sequences and returns what req asks for. ctx is
// checked between blocks: a cancelled context ends the pass early.
func (m *Model) Forward(ctx context.Context, seqs [][]int, req Request) (out *Output, err error) {
	for l, pts := range req.Resid {
		if l < -1 || l >= m.Cfg.NLayer {
			return nil, errs.Input("gptj: layer %d out of range [-1, %d)", l, m.Cfg.NLayer)
		}
		if err := m.checkPoints(seqs, pts, fmt.Sprintf("layer %d", l)); err != nil {
			return nil, err
		}
	}
	if err := m.checkPoints(seqs, req.LogitPoints, "logits"); err != nil {
		return nil, err
	}
	s := torch.NewScope()
	defer s.Close()
	in, err := m.prepare(s, seqs, req.LeftPad)
	if err != nil {
		return nil, err
	}
	out = &Output{Resid: map[int]*torch.Tensor{}, T: in.T, Offset: in.offset}
	var residIdx map[int]*torch.Tensor
	var logitIdx *torch.Tensor
	if !req.Full {
		residIdx, logitIdx = m.pointIndex(s, req, in) // uploaded once, before the block loop
	}
	keep := func(bs *torch.Scope, l int, x *torch.Tensor) *torch.Tensor {
		if req.Full {
			out.Resid[l] = bs.Keep(bs.Contiguous(x)) // (B, T, C)
		} else if idx := residIdx[l]; idx != nil {
			out.Resid[l] = bs.Keep(m.rows(bs, x, idx, in)) // (len(pts), C)
		}
		return x
	}
	x := m.Embed(s, in.ids, in.pos) // (B, T, C)
	keep(s, -1, x)
	sin, cos := m.rotary(s, in.pos) // (B, T, 1, rot/2)
	x, _ = m.RunBlocks(ctx, s, x, Pass{End: m.Cfg.NLayer, Sin: sin, Cos: cos, Mask: in.mask, Pos: in.pos, Post: keep})
	if req.Full {
		out.Logits = s.Keep(m.head(s, x)) // (B, T, V)
	} else if len(req.LogitPoints) > 0 {
		out.Logits = s.Keep(m.head(s, m.rows(s, x, logitIdx, in))) // (len(LogitPoints), V)
	}
	if err := s.Err(); err != nil {
		out.Close()
		return nil, err
	}
	return out, nil
}

// Prefix holds the K/V of a token prefix for every block, (1, Hkv, P, D) each (nil when Len = 0).
type Prefix struct {
	Len int
	KV
}

// Close frees the cache.
func (p *Prefix) Close() {
	if p == nil {
		return
	}
	p.KV.Close()
}

// ComputePrefix runs the prefix tokens and keeps every block's K/V. An empty prefix is allowed
// (Len 0, nil tensors). ctx is checked between blocks.
func (m *Model) ComputePrefix(ctx context.Context, ids []int) (*Prefix, error) {
	if len(ids) == 0 {
		return &Prefix{KV: KV{K: make([]*torch.Tensor, m.Cfg.NLayer), V: make([]*torch.Tensor, m.Cfg.NLayer)}}, nil
	}
	s := torch.NewScope()
	defer s.Close()
	in, err := m.prepare(s, [][]int{ids}, false)
	if err != nil {
		return nil, err
	}
	x := m.Embed(s, in.ids, in.pos) // (1, P, C)
	sin, cos := m.rotary(s, in.pos) // (1, P, 1, rot/2)
	_, kv := m.RunBlocks(ctx, s, x, Pass{End: m.Cfg.NLayer, Sin: sin, Cos: cos, Mask: in.mask, Pos: in.pos, CollectKV: true})
	if err := s.Err(); err != nil {
		return nil, err
	}
	return &Prefix{Len: len(ids), KV: *kv}, nil
}

// Continue runs one position per row through blocks start … L-1 and the head: h (N, C) is the
// residual entering block start (the output of block start-1) at sequence position pos, after the
// cached prefix (pos >= prefix.Len; positions between belong to tail, which must then be given).
// tail (optional) are tokens between the prefix and the patched position — not supported yet;
// the patched position directly follows the prefix. It returns float32 logits (N, V). ctx is
// checked between blocks.
func (m *Model) Continue(ctx context.Context, h *torch.Tensor, start int, prefix *Prefix) (*torch.Tensor, error) {
	if start < 0 || start > m.Cfg.NLayer {
		return nil, errs.Input("gptj: start block %d out of range [0, %d]", start, m.Cfg.NLayer)
	}
	s := torch.NewScope()
	defer s.Close()
	shape := h.Shape()
	if len(shape) != 2 || shape[1] != int64(m.Cfg.NEmbd) {
		return nil, errs.Input("gptj: Continue wants hidden states (N, %d), got %v", m.Cfg.NEmbd, shape)
	}
	N := shape[0]
	x := s.Reshape(h, N, 1, int64(m.Cfg.NEmbd)) // (N, 1, C)
	pos := s.Full([]int64{1, 1}, float64(prefix.Len), torch.Int64, m.Device)
	sin, cos := m.rotary(s, pos) // (1, 1, 1, rot/2), broadcast over N
	p := Pass{Start: start, End: m.Cfg.NLayer, Sin: sin, Cos: cos, Past: &prefix.KV}
	if m.Cfg.windowed(start, m.Cfg.NLayer) {
		p.Pos, p.PastPos = pos, prefix.Positions(s, m.Device)
	}
	x, _ = m.RunBlocks(ctx, s, x, p)
	logits := s.Reshape(m.head(s, x), N, -1) // (N, V)
	if err := s.Err(); err != nil {
		return nil, err
	}
	return s.Keep(logits), nil
}

// LogitsAt returns the float32 logits of token tok[i] at row i of x (N, C), a residual after
// the last block: (norm(x) · W[tok] + b[tok]) without the (N, V) projection.
func (m *Model) LogitsAt(s *torch.Scope, x, tok *torch.Tensor) *torch.Tensor {
	z := m.norm(s, x, m.lnfW, m.lnfB)   // (N, C)
	w := s.IndexSelect(m.headW, 0, tok) // (N, C)
	y := s.Sum(s.Mul(s.To(z, torch.Float32, m.Device), s.To(w, torch.Float32, m.Device)), 1, false)
	if m.headB != nil {
		y = s.Add(y, s.To(s.IndexSelect(m.headB, 0, tok), torch.Float32, m.Device))
	}
	if m.DType != torch.Float32 {
		// head()'s Linear accumulates in float32 and rounds its output to the model dtype once;
		// round the same way so both paths give the same logit
		y = s.To(s.To(y, m.DType, m.Device), torch.Float32, m.Device)
	}
	return y
}
