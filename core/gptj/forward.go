package gptj

import (
	"context"
	"fmt"

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
	// Ctx, if set, is checked between blocks: a cancelled context ends the pass early.
	Ctx context.Context
}

func ctxErr(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cancelled: %w", err)
	}
	return nil
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

// rotary returns sin, cos (B, T, 1, rot/2) for positions pos (B, T).
func (m *Model) rotary(s *torch.Scope, pos *torch.Tensor) (sin, cos *torch.Tensor) {
	half := int64(m.Cfg.RotaryDim / 2)
	sc := s.Embedding(m.sincos, pos) // (B, T, rot)
	sin = s.Unsqueeze(s.Narrow(sc, -1, 0, half), 2)
	cos = s.Unsqueeze(s.Narrow(sc, -1, half, half), 2)
	return sin, cos
}

// blockForward runs block l on x (B, T, C). sin/cos (B, T, 1, rot/2). pastK/pastV (Bp, H, P, D)
// with Bp = 1 (shared prefix, broadcast) or B, or nil. mask (B|1, 1, T, P+T) bool or nil (all
// allowed). It returns the block output and this call's K, V (B, H, T, D).
func (m *Model) blockForward(s *torch.Scope, l int, x, sin, cos, pastK, pastV, mask *torch.Tensor) (out, k, v *torch.Tensor) {
	b := &m.blocks[l]
	cfg := m.Cfg
	H, D := int64(cfg.NHead), int64(cfg.HeadDim())
	shape := x.Shape()
	if shape == nil {
		s.Fail(fmt.Errorf("block %d: input missing", l))
		return nil, nil, nil
	}
	B, T := shape[0], shape[1]
	h := s.LayerNorm(x, b.ln1W, b.ln1B, cfg.LayerNormEps) // (B, T, C)
	q := s.Reshape(s.Linear(h, b.q, nil), B, T, H, D)     // (B, T, H, D)
	k = s.Reshape(s.Linear(h, b.k, nil), B, T, H, D)
	v = s.Transpose(s.Reshape(s.Linear(h, b.v, nil), B, T, H, D), 1, 2) // (B, H, T, D)
	rot := int64(cfg.RotaryDim)
	q = s.Transpose(s.RotaryGPTJ(q, sin, cos, rot), 1, 2) // (B, H, T, D)
	k = s.Transpose(s.RotaryGPTJ(k, sin, cos, rot), 1, 2)
	kAll, vAll := k, v
	if pastK != nil {
		pk, pv := pastK, pastV
		if ps := pastK.Shape(); ps != nil && ps[0] != B {
			pk = s.Expand(pastK, B, -1, -1, -1)
			pv = s.Expand(pastV, B, -1, -1, -1)
		}
		kAll = s.Cat([]*torch.Tensor{pk, k}, 2) // (B, H, P+T, D)
		vAll = s.Cat([]*torch.Tensor{pv, v}, 2)
	}
	a := s.Attention(q, kAll, vAll, mask)                              // (B, H, T, D)
	a = s.Linear(s.Reshape(s.Transpose(a, 1, 2), B, T, H*D), b.o, nil) // (B, T, C)
	f := s.Linear(s.GeluTanh(s.Linear(h, b.fcInW, b.fcInB)), b.fcOutW, b.fcOutB)
	out = s.Add(s.Add(a, f), x)
	return out, k, v
}

// head is ln_f then lm_head, returning float32 logits.
func (m *Model) head(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
	y := s.Linear(s.LayerNorm(x, m.lnfW, m.lnfB, m.Cfg.LayerNormEps), m.headW, m.headB)
	if m.DType != torch.Float32 {
		y = s.To(y, torch.Float32, m.Device)
	}
	return y
}

// rows gathers x (B, T, C) at points -> (P, C).
func (m *Model) rows(s *torch.Scope, x *torch.Tensor, pts []Point, in *batchInput) *torch.Tensor {
	idx := make([]int64, len(pts))
	for i, p := range pts {
		idx[i] = int64(p.Seq*in.T + in.offset[p.Seq] + p.Pos)
	}
	flat := s.Reshape(x, int64(in.B*in.T), -1)
	it := torch.ScopeFromSlice(s, idx, []int64{int64(len(idx))}, torch.Int64, m.Device)
	return s.IndexSelect(flat, 0, it)
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

// Forward runs the model on a batch of token sequences and returns what req asks for.
func (m *Model) Forward(seqs [][]int, req Request) (out *Output, err error) {
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
	keep := func(l int, x *torch.Tensor) {
		if req.Full {
			out.Resid[l] = s.Keep(s.Contiguous(x))
		} else if pts := req.Resid[l]; len(pts) > 0 {
			out.Resid[l] = s.Keep(m.rows(s, x, pts, in))
		}
	}
	x := s.Embedding(m.wte, in.ids) // (B, T, C)
	keep(-1, x)
	sin, cos := m.rotary(s, in.pos)
	for l := 0; l < m.Cfg.NLayer && s.Err() == nil; l++ {
		if err := ctxErr(req.Ctx); err != nil {
			s.Fail(err)
			break
		}
		bs := torch.NewScope()
		y, _, _ := m.blockForward(bs, l, x, sin, cos, nil, nil, in.mask)
		if err := bs.Err(); err != nil {
			bs.Close()
			s.Fail(fmt.Errorf("block %d: %w", l, err))
			break
		}
		bs.Keep(y)
		bs.Close()
		s.Free(x) // the previous block's output (or the embedding): kept rows are separate handles
		s.Own(y, nil)
		x = y
		keep(l, x)
	}
	if req.Full {
		out.Logits = s.Keep(m.head(s, x))
	} else if len(req.LogitPoints) > 0 {
		out.Logits = s.Keep(m.head(s, m.rows(s, x, req.LogitPoints, in)))
	}
	if err := s.Err(); err != nil {
		out.Close()
		return nil, err
	}
	return out, nil
}

// Prefix holds the K/V of a token prefix for every block, (1, H, P, D) each.
type Prefix struct {
	Len  int
	K, V []*torch.Tensor
}

// Close frees the cache.
func (p *Prefix) Close() {
	if p == nil {
		return
	}
	for i := range p.K {
		p.K[i].Close()
		p.V[i].Close()
	}
}

// ComputePrefix runs the prefix tokens and keeps every block's K/V. An empty prefix is allowed
// (Len 0, nil tensors).
func (m *Model) ComputePrefix(ids []int) (*Prefix, error) {
	p := &Prefix{Len: len(ids), K: make([]*torch.Tensor, m.Cfg.NLayer), V: make([]*torch.Tensor, m.Cfg.NLayer)}
	if len(ids) == 0 {
		return p, nil
	}
	s := torch.NewScope()
	defer s.Close()
	in, err := m.prepare(s, [][]int{ids}, false)
	if err != nil {
		return nil, err
	}
	x := s.Embedding(m.wte, in.ids)
	sin, cos := m.rotary(s, in.pos)
	for l := 0; l < m.Cfg.NLayer; l++ {
		var k, v *torch.Tensor
		x, k, v = m.blockForward(s, l, x, sin, cos, nil, nil, in.mask)
		p.K[l] = s.Keep(s.Contiguous(k))
		p.V[l] = s.Keep(s.Contiguous(v))
	}
	if err := s.Err(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Continue runs one position per row through blocks start … L-1 and the head: h (N, C) is the
// residual entering block start (the output of block start-1) at sequence position pos, after the
// cached prefix (pos >= prefix.Len; positions between belong to tail, which must then be given).
// tail (optional) are tokens between the prefix and the patched position — not supported yet;
// the patched position directly follows the prefix. It returns float32 logits (N, V).
func (m *Model) Continue(h *torch.Tensor, start int, prefix *Prefix) (*torch.Tensor, error) {
	return m.ContinueCtx(nil, h, start, prefix)
}

// ContinueCtx is Continue that checks ctx (if not nil) between blocks.
func (m *Model) ContinueCtx(ctx context.Context, h *torch.Tensor, start int, prefix *Prefix) (*torch.Tensor, error) {
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
	for l := start; l < m.Cfg.NLayer && s.Err() == nil; l++ {
		if err := ctxErr(ctx); err != nil {
			return nil, err
		}
		bs := torch.NewScope()
		y, _, _ := m.blockForward(bs, l, x, sin, cos, prefix.K[l], prefix.V[l], nil)
		if err := bs.Err(); err != nil {
			bs.Close()
			return nil, fmt.Errorf("block %d: %w", l, err)
		}
		bs.Keep(y)
		bs.Close()
		s.Free(x) // only the newest block output is needed
		s.Own(y, nil)
		x = y
	}
	logits := s.Reshape(m.head(s, x), N, -1)
	if err := s.Err(); err != nil {
		return nil, err
	}
	return s.Keep(logits), nil
}

// LogitsAt returns the float32 logits of token tok[i] at row i of x (N, C), a residual after
// the last block: (ln_f(x) · W[tok] + b[tok]) without the (N, V) projection.
func (m *Model) LogitsAt(s *torch.Scope, x, tok *torch.Tensor) *torch.Tensor {
	z := s.LayerNorm(x, m.lnfW, m.lnfB, m.Cfg.LayerNormEps) // (N, C)
	w := s.IndexSelect(m.headW, 0, tok)                     // (N, C)
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
