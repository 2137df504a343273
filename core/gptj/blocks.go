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

// KV is a K/V cache: K[l] and V[l] (Bk, H, P, D) hold the keys and values of P positions for
// block l; nil for a block it does not cover (or when P = 0). The owner closes it.
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
	Sin, Cos   *torch.Tensor // rotary angles of x's positions: (B|1, T, 1, rot/2) each
	Mask       *torch.Tensor // (B|1, 1, T, P+T) bool, true = may attend; nil = attend to all
	// Past holds the K/V of P earlier positions per block, which x's queries attend to before
	// its own keys. Batch 1 is broadcast over x's B rows (expanded, not copied); else batch B.
	Past *KV
	// CollectKV returns this pass's own K/V (B, H, T, D) for every block run (a prefix cache, a
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
	var kv *KV
	if p.CollectKV {
		kv = &KV{K: make([]*torch.Tensor, m.Cfg.NLayer), V: make([]*torch.Tensor, m.Cfg.NLayer)}
	}
	for l := p.Start; l < p.End; l++ {
		err := ctxErr(ctx)
		var y *torch.Tensor
		if err == nil {
			y, err = m.hookedBlock(l, x, &p, kv)
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

// hookedBlock runs p.Pre, block l and p.Post on x (B, T, C) in a scope of its own, stores the
// block's K/V in kv (if not nil), and returns the residual leaving it (B, T, C), which the caller
// owns.
func (m *Model) hookedBlock(l int, x *torch.Tensor, p *Pass, kv *KV) (*torch.Tensor, error) {
	bs := torch.NewScope()
	defer bs.Close()
	if p.Pre != nil {
		x = p.Pre(bs, l, x)
	}
	pastK, pastV := p.Past.at(l)
	y, k, v := m.blockForward(bs, l, x, p.Sin, p.Cos, pastK, pastV, p.Mask) // (B, T, C), (B, H, T, D) ×2
	if kv != nil {
		kv.K[l] = bs.Keep(bs.Contiguous(k))
		kv.V[l] = bs.Keep(bs.Contiguous(v))
	}
	if p.Post != nil {
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

// blockForward runs block l on x (B, T, C). sin/cos (B|1, T, 1, rot/2). pastK/pastV (Bp, H, P, D)
// with Bp = 1 (shared prefix, broadcast) or B, or nil. mask (B|1, 1, T, P+T) bool or nil (all
// allowed). It returns the block output (B, T, C) and this call's K, V (B, H, T, D).
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
	a := m.attend(s, q, k, v, pastK, pastV, mask)                      // (B, H, T, D)
	a = s.Linear(s.Reshape(s.Transpose(a, 1, 2), B, T, H*D), b.o, nil) // (B, T, C)
	f := s.Linear(s.GeluTanh(s.Linear(h, b.fcInW, b.fcInB)), b.fcOutW, b.fcOutB)
	out = s.Add(s.Add(a, f), x) // (B, T, C)
	return out, k, v
}

// attend is block attention: q (B, H, T, D) attends to pastK/pastV (Bp, H|Hkv, P, D) with Bp = 1
// (a shared prefix, broadcast) or B, or nil, followed by k, v (B, H|Hkv, T, D); mask
// (B|1, 1, T, P+T) bool or nil (all allowed). It returns (B, H, T, D).
func (m *Model) attend(s *torch.Scope, q, k, v, pastK, pastV, mask *torch.Tensor) *torch.Tensor {
	var B int64
	if sh := q.Shape(); sh != nil {
		B = sh[0]
	}
	kAll, vAll := k, v
	if pastK != nil {
		pk, pv := pastK, pastV
		if ps := pastK.Shape(); ps != nil && ps[0] != B {
			pk = s.Expand(pastK, B, -1, -1, -1) // (1, H, P, D) -> (B, H, P, D), a view
			pv = s.Expand(pastV, B, -1, -1, -1)
		}
		kAll = s.Cat([]*torch.Tensor{pk, k}, 2) // (B, H, P+T, D)
		vAll = s.Cat([]*torch.Tensor{pv, v}, 2)
	}
	a := s.Attention(q, kAll, vAll, mask) // (B, H, T, D)
	return a
}
