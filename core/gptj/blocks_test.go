package gptj

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/simplescope/simplescope/core/torch"
)

// RunBlocks is what the patching and generation passes build on: these check the pieces they
// need (split passes, hooks that read and replace the residual, a past K/V broadcast or per row,
// K/V collected step by step, cancellation) against the plain forward.
func TestRunBlocks(t *testing.T) {
	r := makeRef(t, "prefix")
	m, err := Load(r.dir, torch.Float32, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	L := m.Cfg.NLayer
	seqs := [][]int{r.ids(t, 0), r.ids(t, 1)}
	full, err := m.Forward(ctx, seqs, Request{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	live := torch.LiveTensors()

	// embed makes a pass's inputs for seqs, as Forward does.
	embed := func(s *torch.Scope) (x *torch.Tensor, p Pass) {
		in, err := m.prepare(s, seqs, false)
		if err != nil {
			t.Fatal(err)
		}
		p.Sin, p.Cos = m.rotary(s, in.pos)
		p.Mask = in.mask
		return s.Embedding(m.wte, in.ids), p
	}
	check := func(s *torch.Scope, what string, got *torch.Tensor, want *torch.Tensor, tol float64) {
		t.Helper()
		if err := s.Err(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		compare(t, what, readAll(t, got), readAll(t, want), tol)
	}

	t.Run("split passes and hooks", func(t *testing.T) {
		s := torch.NewScope()
		defer s.Close()
		x, p := embed(s)
		seen := map[string]*torch.Tensor{}
		record := func(site string) Hook {
			return func(s *torch.Scope, l int, x *torch.Tensor) *torch.Tensor {
				seen[fmt.Sprint(site, l)] = s.Keep(s.Clone(x))
				return x
			}
		}
		p.End, p.Pre, p.Post = 2, record("pre"), record("post")
		x, _ = m.RunBlocks(ctx, s, x, p)
		p.Start, p.End = 2, L
		x, _ = m.RunBlocks(ctx, s, x, p)
		check(s, "blocks [0, 2) then [2, L)", x, full.Resid[L-1], 0)
		for l := 0; l < L; l++ {
			check(s, fmt.Sprintf("Pre hook at block %d", l), seen[fmt.Sprint("pre", l)], full.Resid[l-1], 0)
			check(s, fmt.Sprintf("Post hook at block %d", l), seen[fmt.Sprint("post", l)], full.Resid[l], 0)
		}
		for _, v := range seen {
			v.Close()
		}
	})

	t.Run("a Pre hook's replacement is what the block reads", func(t *testing.T) {
		s := torch.NewScope()
		defer s.Close()
		_, p := embed(s)
		x := s.Zeros(full.Resid[0].Shape(), torch.Float32, m.Device) // not the residual
		p.Start, p.End = 1, L
		p.Pre = func(s *torch.Scope, l int, x *torch.Tensor) *torch.Tensor {
			if l == 1 {
				return s.Clone(full.Resid[0])
			}
			return x
		}
		x, _ = m.RunBlocks(ctx, s, x, p)
		check(s, "patched at block 1's input", x, full.Resid[L-1], 0)
	})

	t.Run("K/V collected step by step is a generation cache", func(t *testing.T) {
		seq := seqs[0]
		P := len(seq) - 1
		prefix, err := m.ComputePrefix(ctx, seq[:P])
		if err != nil {
			t.Fatal(err)
		}
		defer prefix.Close()
		whole, err := m.ComputePrefix(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		defer whole.Close()
		s := torch.NewScope()
		defer s.Close()
		// the last token attends to the cached prefix: batch 1 broadcast over 2 identical rows,
		// and the same cache copied per row
		ids := s.Full([]int64{2, 1}, float64(seq[P]), torch.Int64, m.Device)
		sin, cos := m.rotary(s, s.Full([]int64{1, 1}, float64(P), torch.Int64, m.Device))
		perRow := &KV{K: make([]*torch.Tensor, L), V: make([]*torch.Tensor, L)}
		for l := 0; l < L; l++ {
			perRow.K[l] = s.Cat([]*torch.Tensor{prefix.K[l], prefix.K[l]}, 0) // (2, H, P, D)
			perRow.V[l] = s.Cat([]*torch.Tensor{prefix.V[l], prefix.V[l]}, 0)
		}
		var outs [2]*torch.Tensor
		var kvs [2]*KV
		for i, past := range []*KV{&prefix.KV, perRow} {
			p := Pass{End: L, Sin: sin, Cos: cos, Past: past, CollectKV: true}
			outs[i], kvs[i] = m.RunBlocks(ctx, s, s.Embedding(m.wte, ids), p) // (2, 1, C)
			defer kvs[i].Close()
		}
		last := s.Narrow(s.Select(full.Resid[L-1], 0, 0), 0, int64(P), 1) // (1, C)
		for i, what := range []string{"broadcast", "per-row"} {
			for row := int64(0); row < 2; row++ {
				got := s.Select(outs[i], 0, row)
				check(s, fmt.Sprintf("%s past, row %d: residual vs the full forward", what, row), got, last, 1e-4)
			}
			for l := 0; l < L; l++ {
				k := s.Cat([]*torch.Tensor{prefix.K[l], s.Narrow(kvs[i].K[l], 0, 0, 1)}, 2) // (1, H, P+1, D)
				check(s, fmt.Sprintf("%s past: cache + new K at block %d vs the whole prompt's", what, l), k, whole.K[l], 1e-4)
			}
		}
		check(s, "broadcast vs per-row past", outs[0], outs[1], 0)
	})

	t.Run("cancelled between blocks", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		s := torch.NewScope()
		defer s.Close()
		x, p := embed(s)
		p.End, p.CollectKV = L, true
		p.Post = func(s *torch.Scope, l int, x *torch.Tensor) *torch.Tensor {
			if l == 1 {
				cancel()
			}
			return x
		}
		y, kv := m.RunBlocks(cctx, s, x, p)
		if y != nil || kv != nil || !errors.Is(s.Err(), context.Canceled) {
			t.Fatalf("cancelled pass returned %v, %v, error %v", y, kv, s.Err())
		}
	})

	if after := torch.LiveTensors(); after != live {
		t.Fatalf("live tensors %d -> %d", live, after)
	}
}
