package gptj

import (
	"context"
	"fmt"

	"github.com/simplescope/simplescope/core/errs"
	"github.com/simplescope/simplescope/core/torch"
)

// The block stack. Every pass through the model — the full forward, a target prefix whose K/V is
// cached, a one-position continuation after that prefix — is RunBlocks with different data:
//
//	x (B, T, C) ──▶ [Pre(l)] ─▶ block l ─▶ [Post(l)] ──▶ … ──▶ (B, T, C) leaving block End-1
//	                               ▲  │
//	               Past.K/V[l] ────┘  └──▶ this pass's K/V[l] (if CollectKV)
//
// What differs between passes is what goes in (the residual, rotary angles, mask, past K/V), which
// blocks run, and what comes out (the K/V, or what the hooks keep or change).

// Hook sees the residual x (B, T, C) at block l — entering it (Pass.Pre, TransformerLens
// blocks.l.hook_resid_pre) or leaving it (Pass.Post, blocks.l.hook_resid_post) — and returns
// the residual to go on with: x itself, or a replacement of the same shape made in s.
//
// s is the block's own scope, closed when the block is done. A hook that keeps a tensor beyond
// the call (rows of x to return, say) takes it out of s with s.Keep and closes it later itself.
// A hook reports a failure with s.Fail; the pass then stops with that error.
type Hook func(s *torch.Scope, l int, x *torch.Tensor) *torch.Tensor

// KV is a K/V cache: K[l] and V[l] (Bk, Hkv, P, D) hold the keys and values of P positions for
// block l (Hkv key/value heads: Cfg.KVHeads(), the head count without grouped-query attention);
// nil for a block it does not cover (or when P = 0). The owner closes it.
type KV struct{ K, V []*torch.Tensor }

// Close frees the cached tensors. Safe on nil.
func (kv *KV) Close() {
	if kv == nil {
		return
	}
	for i := range kv.K {
		kv.K[i].Close()
		kv.V[i].Close()
	}
}

// at returns block l's cached K, V, or nil, nil when kv does not cover it.
func (kv *KV) at(l int) (k, v *torch.Tensor) {
	if kv == nil || l >= len(kv.K) {
		return nil, nil
	}
	return kv.K[l], kv.V[l]
}

// Pass is one run of the block stack, as data. The zero values mean: no mask (every query sees
// every key), no past K/V, no K/V collected, no hooks.
type Pass struct {
	Start, End int           // blocks Start … End-1 run, in order (0 <= Start <= End <= n_layer)
	Sin, Cos   *torch.Tensor // rotary angles of x's positions: (B|1, T, 1, rot/2) each (nil without rotary)
	Mask       *torch.Tensor // (B|1, 1, T, P+T) bool, true = may attend; nil = attend to all
	// Pos (B|1, T) int64 holds the positions of x's rows and PastPos (B|1, P0+P) those of the
	// keys attended before them (Shared's, then Past's). Only blocks with a sliding window read
	// them (a key Cfg.Window(l) or more positions behind its query is hidden, on top of Mask);
	// RunBlocks fails when such a block runs without them (PastPos is needed only with cached
	// keys).
	Pos, PastPos *torch.Tensor
	// Past holds the K/V of P earlier positions per block, which x's queries attend to before
	// its own keys. Batch 1 is shared by x's B rows (attended as it is, never expanded or
	// copied per row); else batch B.
	Past *KV
	// Shared (optional) holds the K/V of P0 positions before Past, batch 1, shared by every row
	// (a target prefix under a per-row generation cache). The mask then covers P0+P+T keys.
	Shared *KV
	// CollectKV returns this pass's own K/V (B, Hkv, T, D) for every block run (a prefix cache, a
	// generation step's new entries — append them to a cache with Cat along dim 2).
	CollectKV bool
	// Pre and Post, if set, are called on the residual entering / leaving every block run.
	Pre, Post Hook
}

// RunBlocks runs the blocks p.Start … p.End-1 on x (B, T, C), the residual entering block
// p.Start, and returns the residual leaving block p.End-1 (B, T, C) — x itself when no block
// runs — and, if p.CollectKV, this pass's K/V (entries outside [p.Start, p.End) nil), which the
// caller closes.
//
// It works like a Scope op: x belongs to s and RunBlocks frees it once block p.Start has read it
// (each block's input is freed as the next residual is made, so one residual is alive at a time);
// the result belongs to s; a failure is recorded in s (check s.Err) and returns nil, nil. Each
// block runs in a scope of its own, so its intermediates are freed when it ends. ctx is checked
// before every block: a cancelled context stops the pass there.
func (m *Model) RunBlocks(ctx context.Context, s *torch.Scope, x *torch.Tensor, p Pass) (*torch.Tensor, *KV) {
	if s.Err() != nil {
		return nil, nil
	}
	if p.Start < 0 || p.Start > p.End || p.End > m.Cfg.NLayer {
		s.Fail(errs.Input("gptj: blocks [%d, %d) out of range [0, %d)", p.Start, p.End, m.Cfg.NLayer))
		return nil, nil
	}
	windows, err := m.windowMasks(s, &p)
	if err != nil {
		s.Fail(err)
		return nil, nil
	}
	defer func() {
		for _, w := range windows {
			s.Free(w)
		}
	}()
	var kv *KV
	if p.CollectKV {
		kv = &KV{K: make([]*torch.Tensor, m.Cfg.NLayer), V: make([]*torch.Tensor, m.Cfg.NLayer)}
	}
	// Nothing in this loop moves data between host and device (docs/design.md §2): index
	// tensors are uploaded before it and results read after it. The mark lets the shim's
	// transfer counters check that (torch.TransferCounts).
	defer torch.HotLoop()()
	for l := p.Start; l < p.End; l++ {
		err := ctxErr(ctx)
		var y *torch.Tensor
		if err == nil {
			mask := p.Mask
			if w := m.Cfg.Window(l); w > 0 {
				mask = windows[w]
			}
			y, err = m.hookedBlock(l, x, &p, mask, kv)
		}
		if err != nil {
			kv.Close()
			s.Fail(err)
			return nil, nil
		}
		s.Free(x) // kept rows and collected K/V are separate handles
		x = s.Own(y, nil)
	}
	return x, kv
}

// windowMasks returns, for every sliding window of the blocks p runs, p.Mask restricted to that
// window, made in s (nil when no block has a window).
func (m *Model) windowMasks(s *torch.Scope, p *Pass) (map[int]*torch.Tensor, error) {
	if !m.Cfg.windowed(p.Start, p.End) {
		return nil, nil
	}
	if p.Pos == nil {
		return nil, fmt.Errorf("gptj: blocks [%d, %d) have a sliding window: the pass needs Pass.Pos", p.Start, p.End)
	}
	kpos := p.Pos
	hasPast := false
	for l := p.Start; l < p.End; l++ {
		k0, _ := p.Shared.at(l)
		k1, _ := p.Past.at(l)
		hasPast = hasPast || k0 != nil || k1 != nil
	}
	if hasPast {
		if p.PastPos == nil {
			return nil, fmt.Errorf("gptj: blocks [%d, %d) have a sliding window: a pass with cached keys needs Pass.PastPos", p.Start, p.End)
		}
		pp, qp := p.PastPos, p.Pos
		if a, b := pp.Shape(), qp.Shape(); len(a) == 2 && len(b) == 2 && a[0] != b[0] {
			n := max(a[0], b[0])
			pp, qp = s.Expand(pp, n, -1), s.Expand(qp, n, -1)
		}
		kpos = s.Cat([]*torch.Tensor{pp, qp}, 1) // (B|1, P0+P+T)
	}
	masks := map[int]*torch.Tensor{}
	for l := p.Start; l < p.End; l++ {
		if w := m.Cfg.Window(l); w > 0 && masks[w] == nil {
			masks[w] = s.WindowMask(p.Mask, p.Pos, kpos, int64(w)) // (B|1, 1, T, P0+P+T)
		}
	}
	if kpos != p.Pos {
		s.Free(kpos)
	}
	return masks, s.Err()
}

// hookedBlock runs p.Pre, block l (attending under mask) and p.Post on x (B, T, C) in a scope of
// its own, stores the block's K/V in kv (if not nil), and returns the residual leaving it
// (B, T, C), which the caller owns.
func (m *Model) hookedBlock(l int, x *torch.Tensor, p *Pass, mask *torch.Tensor, kv *KV) (*torch.Tensor, error) {
	bs := torch.NewScope()
	defer bs.Close()
	if p.Pre != nil {
		x = p.Pre(bs, l, x)
	}
	var parts kvParts
	parts.add(p.Shared.at(l))
	parts.add(p.Past.at(l))
	y, k, v := m.blockForward(bs, l, x, p.Sin, p.Cos, parts, mask) // (B, T, C), (B, Hkv, T, D) ×2
	if kv != nil {
		kv.K[l] = bs.Keep(bs.Contiguous(k))
		kv.V[l] = bs.Keep(bs.Contiguous(v))
	}
	if p.Post != nil && bs.Err() == nil { // hooks see a residual, never the nil of a failed block
		y = p.Post(bs, l, y)
	}
	if err := bs.Err(); err != nil {
		return nil, fmt.Errorf("block %d: %w", l, err)
	}
	return bs.Keep(y), nil
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

// kvParts are the cached keys and values a block's queries attend to before their own, in order
// (a shared prefix, a per-row cache), each (1|B, Hkv, P_i, D).
type kvParts struct{ k, v []*torch.Tensor }

func (ps *kvParts) add(k, v *torch.Tensor) {
	if k != nil {
		ps.k, ps.v = append(ps.k, k), append(ps.v, v)
	}
}

// blockForward runs block l on x (B, T, C), the way m.Cfg.Family says. sin/cos
// (B|1, T, 1, rot/2) or nil without rotary. past: the cached K/V parts attended before x's own
// keys, each (1|B, Hkv, P_i, D) — a part of batch 1 is shared by every row without being copied
// per row. mask (B|1, 1, T, ΣP_i+T) bool or nil (all allowed). It returns the block output
// (B, T, C) and this call's K, V (B, Hkv, T, D).
func (m *Model) blockForward(s *torch.Scope, l int, x, sin, cos *torch.Tensor, past kvParts, mask *torch.Tensor) (out, k, v *torch.Tensor) {
	b := &m.blocks[l]
	cfg := m.Cfg
	fam := &cfg.Family
	H, D := int64(cfg.NHead), int64(cfg.HeadDim())
	shape := x.Shape()
	if shape == nil {
		s.Fail(fmt.Errorf("block %d: input missing", l))
		return nil, nil, nil
	}
	B, T := shape[0], shape[1]
	h := m.norm(s, x, b.ln1W, b.ln1B)   // (B, T, C)
	q, k, v := m.project(s, b, h, B, T) // (B, T, H, D), (B, T, Hkv, D) ×2
	if fam.QKNorm {
		q = s.RMSNorm(q, b.qNorm, cfg.LayerNormEps)
		k = s.RMSNorm(k, b.kNorm, cfg.LayerNormEps)
	}
	v = s.Transpose(v, 1, 2)                        // (B, Hkv, T, D)
	q = s.Transpose(m.rotate(s, q, sin, cos), 1, 2) // (B, H, T, D)
	k = s.Transpose(m.rotate(s, k, sin, cos), 1, 2) // (B, Hkv, T, D)
	if l < len(cfg.AttnScale) && cfg.AttnScale[l] != 1 {
		q = s.MulScalar(q, cfg.AttnScale[l])
	}
	a := m.attendGrouped(s, q, k, v, past, mask)                        // (B, H, T, D)
	a = s.Linear(s.Reshape(s.Transpose(a, 1, 2), B, T, H*D), b.o, b.oB) // (B, T, C)
	switch fam.Residual {
	case ParallelOneNorm: // GPT-J: attn + mlp + x, both reading h
		out = s.Add(s.Add(a, m.mlp(s, b, h)), x)
	case ParallelTwoNorm: // NeoX: mlp(ln2(x)) + attn + x
		out = s.Add(s.Add(m.mlp(s, b, m.norm(s, x, b.ln2W, b.ln2B)), a), x)
	default: // sequential: r = x + attn; r + mlp(ln2(r))
		r := s.Add(x, a)
		out = s.Add(r, m.mlp(s, b, m.norm(s, r, b.ln2W, b.ln2B)))
	}
	return out, k, v // (B, T, C)
}

// norm is the family's normalization of x (..., C) with weight w and bias bias (LayerNorm) or
// weight w alone (the RMS norms).
func (m *Model) norm(s *torch.Scope, x, w, bias *torch.Tensor) *torch.Tensor {
	switch m.Cfg.Family.Norm {
	case RMSNorm:
		return s.RMSNorm(x, w, m.Cfg.LayerNormEps)
	case RMSNormPlusOne:
		return s.RMSNormPlusOne(x, w, m.Cfg.LayerNormEps)
	}
	return s.LayerNorm(x, w, bias, m.Cfg.LayerNormEps)
}

// project returns the queries (B, T, H, D), keys and values (B, T, Hkv, D) of h (B, T, C), from
// separate projections or a fused one.
func (m *Model) project(s *torch.Scope, b *block, h *torch.Tensor, B, T int64) (q, k, v *torch.Tensor) {
	H, Hkv, D := int64(m.Cfg.NHead), int64(m.Cfg.KVHeads()), int64(m.Cfg.HeadDim())
	switch m.Cfg.Family.QKV {
	case QKVFused: // rows [q | k | v]
		y := s.Linear(h, b.qkv, b.qkvB) // (B, T, (H+2·Hkv)·D)
		q = s.Reshape(s.Narrow(y, -1, 0, H*D), B, T, H, D)
		k = s.Reshape(s.Narrow(y, -1, H*D, Hkv*D), B, T, Hkv, D)
		v = s.Reshape(s.Narrow(y, -1, (H+Hkv)*D, Hkv*D), B, T, Hkv, D)
	case QKVFusedPerHead: // rows [head][q | k | v] (Hkv = H)
		y := s.Reshape(s.Linear(h, b.qkv, b.qkvB), B, T, H, 3*D)
		q, k, v = s.Narrow(y, -1, 0, D), s.Narrow(y, -1, D, D), s.Narrow(y, -1, 2*D, D)
	default:
		q = s.Reshape(s.Linear(h, b.q, b.qB), B, T, H, D)
		k = s.Reshape(s.Linear(h, b.k, b.kB), B, T, Hkv, D)
		v = s.Reshape(s.Linear(h, b.v, b.vB), B, T, Hkv, D)
	}
	return q, k, v
}

// rotate applies the family's rotary embedding to x (B, T, heads, D); x itself without one.
func (m *Model) rotate(s *torch.Scope, x, sin, cos *torch.Tensor) *torch.Tensor {
	rot := int64(m.Cfg.RotaryDim)
	switch m.Cfg.Family.Rotary {
	case RotaryPairs:
		return s.RotaryGPTJ(x, sin, cos, rot)
	case RotaryHalves:
		return s.RotaryHalf(x, sin, cos, rot)
	}
	return x
}

// mlp is the family's feed-forward network on h (B, T, C).
func (m *Model) mlp(s *torch.Scope, b *block, h *torch.Tensor) *torch.Tensor {
	up := s.Linear(h, b.fcInW, b.fcInB)
	if m.Cfg.Family.MLP == MLPGated {
		up = s.Mul(m.act(s, s.Linear(h, b.gateW, b.gateB)), up)
	} else {
		up = m.act(s, up)
	}
	return s.Linear(up, b.fcOutW, b.fcOutB)
}

// act is the config's activation.
func (m *Model) act(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
	switch m.Cfg.Activation {
	case "gelu":
		return s.Gelu(x)
	case "silu", "swish":
		return s.Silu(x)
	}
	return s.GeluTanh(x) // gelu_new, gelu_pytorch_tanh, gelu_fast
}

// attendGrouped is attend for grouped-query attention: k, v and the cached parts (…, Hkv, …, D)
// are repeated to the H query heads first (HF's repeat_kv: key/value head j serves query heads
// j·H/Hkv … (j+1)·H/Hkv − 1; a shared part of batch 1 is repeated at batch 1, once per block);
// without grouping it is attend itself.
func (m *Model) attendGrouped(s *torch.Scope, q, k, v *torch.Tensor, past kvParts, mask *torch.Tensor) *torch.Tensor {
	if g := int64(m.Cfg.NHead / m.Cfg.KVHeads()); g > 1 {
		k, v = repeatKV(s, k, g), repeatKV(s, v, g)
		var rep kvParts
		for i := range past.k {
			rep.add(repeatKV(s, past.k[i], g), repeatKV(s, past.v[i], g))
		}
		past = rep
	}
	return m.attend(s, q, k, v, past, mask)
}

// repeatKV turns x (B, Hkv, T, D) into (B, Hkv·g, T, D), each head repeated g times in place.
func repeatKV(s *torch.Scope, x *torch.Tensor, g int64) *torch.Tensor {
	sh := x.Shape()
	if len(sh) != 4 {
		s.Fail(fmt.Errorf("repeat_kv: want (B, Hkv, T, D), got %v", sh))
		return nil
	}
	e := s.Expand(s.Unsqueeze(x, 2), sh[0], sh[1], g, sh[2], sh[3]) // (B, Hkv, g, T, D), a view
	return s.Reshape(e, sh[0], sh[1]*g, sh[2], sh[3])
}

// attend is block attention: q (B, H, T, D) attends to the cached parts (each (1|B, H, P_i, D))
// then to its own k, v (B, H, T, D); mask (B|1, 1, T, ΣP_i+T) bool or nil (all allowed). It
// returns (B, H, T, D).
func (m *Model) attend(s *torch.Scope, q, k, v *torch.Tensor, past kvParts, mask *torch.Tensor) *torch.Tensor {
	var a *torch.Tensor
	if len(past.k) == 0 {
		a = s.Attention(q, k, v, mask) // (B, H, T, D); at::scaled_dot_product_attention on CUDA
	} else {
		// the cached parts and the own keys attended jointly, without concatenating them: a
		// shared prefix is not copied once per row
		a = s.AttentionParts(q, append(past.k, k), append(past.v, v), mask)
	}
	return a
}
