package patching

import (
	"fmt"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// tails is a right-padded batch of target tails that follow a shared prefix of P tokens: row b
// holds target[P:] of its row, at absolute positions P, P+1, ….
type tails struct {
	B, T, P int
	lens    []int         // tail length per row
	valid   [][]bool      // per row, (P+T) keys: the prefix and the row's own tail tokens
	ids     *torch.Tensor // (B, T) int64, 0 in the padding
	pos     *torch.Tensor // (B, T) int64
	mask    *torch.Tensor // (B, 1, T, P+T) bool: prefix, causal within the tail, no padding
}

// newTails uploads the tails of rows (targets[P:]) in s.
func newTails(s *torch.Scope, m *gptj.Model, rows []Row, idx []int, P int) *tails {
	tb := &tails{B: len(idx), P: P, lens: make([]int, len(idx)), valid: make([][]bool, len(idx))}
	for b, i := range idx {
		tb.lens[b] = len(rows[i].Target) - P
		tb.T = max(tb.T, tb.lens[b])
	}
	B, T := tb.B, tb.T
	ids := make([]int64, B*T)
	pos := make([]int64, B*T)
	mask := make([]uint8, B*T*(P+T))
	for b, i := range idx {
		tb.valid[b] = make([]bool, P+T)
		for k := range P + tb.lens[b] {
			tb.valid[b][k] = k < P || k-P < tb.lens[b]
		}
		for t := range T {
			pos[b*T+t] = int64(P + t)
			if t < tb.lens[b] {
				ids[b*T+t] = int64(rows[i].Target[P+t])
			}
			for k := 0; k <= P+t; k++ { // keys up to the query's own position
				if tb.valid[b][k] {
					mask[(b*T+t)*(P+T)+k] = 1
				}
			}
		}
	}
	dev := m.Device
	tb.ids = torch.ScopeFromSlice(s, ids, []int64{int64(B), int64(T)}, torch.Int64, dev)
	tb.pos = torch.ScopeFromSlice(s, pos, []int64{int64(B), int64(T)}, torch.Int64, dev)
	tb.mask = torch.ScopeFromSlice(s, mask, []int64{int64(B), 1, int64(T), int64(P + T)}, torch.Bool, dev)
	return tb
}

// lastRows gathers x (B, T, C) at each row's last tail token -> (B, C).
func (tb *tails) lastRows(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
	idx := make([]int64, tb.B)
	for b, n := range tb.lens {
		idx[b] = int64(b*tb.T + n - 1)
	}
	flat := s.Reshape(x, int64(tb.B*tb.T), -1)
	return s.IndexSelect(flat, 0, torch.ScopeFromSlice(s, idx, []int64{int64(tb.B)}, torch.Int64, x.Device()))
}

// writer writes each row's vector into the residual (B, T, C) of a tail batch at the row's
// positions, at the block its layer names. Its index tensors are uploaded once per batch.
type writer struct {
	byLayer map[int]writes
}

type writes struct {
	at  *torch.Tensor // (K) int64: flat indices b*T + (position - P)
	src *torch.Tensor // (K, C): the vectors to write
}

// newWriter prepares the writes of rows idx (batch rows b = 0 …) with vectors vecs (N, C), all
// in s. A nil vecs writes nothing.
func newWriter(s *torch.Scope, rows []Row, idx []int, vecs *torch.Tensor, tb *tails) *writer {
	w := &writer{byLayer: map[int]writes{}}
	if vecs == nil {
		return w
	}
	at := map[int][]int64{}
	src := map[int][]int64{}
	for b, i := range idx {
		l := rows[i].Layer
		for _, p := range rows[i].Positions {
			at[l] = append(at[l], int64(b*tb.T+p-tb.P))
			src[l] = append(src[l], int64(i))
		}
	}
	dev := vecs.Device()
	for l := range at {
		n := []int64{int64(len(at[l]))}
		rowsOf := torch.ScopeFromSlice(s, src[l], n, torch.Int64, dev)
		w.byLayer[l] = writes{
			at:  torch.ScopeFromSlice(s, at[l], n, torch.Int64, dev),
			src: s.IndexSelect(vecs, 0, rowsOf),
		}
	}
	return w
}

// hook is a gptj.Hook: at a layer with writes it returns x with the vectors written in.
func (w *writer) hook(s *torch.Scope, l int, x *torch.Tensor) *torch.Tensor {
	wr, ok := w.byLayer[l]
	if !ok {
		return x
	}
	shape := x.Shape() // (B, T, C)
	if len(shape) != 3 {
		s.Fail(fmt.Errorf("patch at block %d: residual of shape %v", l, shape))
		return nil
	}
	flat := s.Reshape(x, shape[0]*shape[1], shape[2])
	return s.Reshape(s.IndexCopy(flat, 0, wr.at, wr.src), shape...)
}

// pass is the RunBlocks pass of a tail batch after prefix, with the writes on site.
func (w *writer) pass(s *torch.Scope, m *gptj.Model, tb *tails, prefix *gptj.Prefix, site Site, collectKV bool) gptj.Pass {
	sin, cos := m.Angles(s, tb.pos) // (B, T, 1, rot/2)
	p := gptj.Pass{End: m.Cfg.NLayer, Sin: sin, Cos: cos, Mask: tb.mask, Past: &prefix.KV, CollectKV: collectKV}
	if m.Cfg.Windowed() {
		p.Pos, p.PastPos = tb.pos, prefix.Positions(s, m.Device)
	}
	if site == ResidPre {
		p.Pre = w.hook
	} else {
		p.Post = w.hook
	}
	return p
}
