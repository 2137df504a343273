package gptj

import (
	"context"
	"fmt"
	"testing"

	"github.com/simplescope/simplescope/core/torch"
)

// The CUDA paths, checked on the CPU: no host↔device transfer inside the block loop (the shim
// counts them on every device), and attention through at::scaled_dot_product_attention (the
// CUDA default) against HF.

// TestNoTransfersInBlockLoop: every pass uploads its index tensors before the block loop and
// reads its results after it — none of it per layer.
func TestNoTransfersInBlockLoop(t *testing.T) {
	r := makeRef(t, "prefix")
	m, err := Load(r.dir, torch.Float32, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	seqs := [][]int{r.ids(t, 0), r.ids(t, 1)}
	L := m.Cfg.NLayer
	check := func(what string, maxUploads int64, run func() error) {
		t.Helper()
		c0 := torch.TransferCounts()
		if err := run(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		d := torch.TransferCounts().Sub(c0)
		if d.HotUploads != 0 || d.HotSyncs != 0 {
			t.Errorf("%s: %d uploads and %d syncs inside the block loop, want none", what, d.HotUploads, d.HotSyncs)
		}
		if d.Uploads > maxUploads {
			t.Errorf("%s: %d uploads, want at most %d (independent of the %d blocks)", what, d.Uploads, maxUploads, L)
		}
		t.Logf("%s: %+v", what, d)
	}
	// residual rows at every layer and logits at a few points: ids, positions, validity and
	// one index tensor for all of them
	resid := map[int][]Point{}
	for l := -1; l < L; l++ {
		resid[l] = []Point{{0, 1}, {1, l + 2}}
	}
	check("Forward with points", 4, func() error {
		out, err := m.Forward(ctx, seqs, Request{Resid: resid, LogitPoints: []Point{{0, 0}, {1, 3}}})
		out.Close()
		return err
	})
	check("Forward, full", 3, func() error {
		out, err := m.Forward(ctx, seqs, Request{Full: true, LeftPad: true})
		out.Close()
		return err
	})
	var prefix *Prefix
	check("ComputePrefix", 3, func() error {
		prefix, err = m.ComputePrefix(ctx, seqs[0][:5])
		return err
	})
	defer prefix.Close()
	check("Continue", 0, func() error {
		s := torch.NewScope()
		defer s.Close()
		h := s.Zeros([]int64{6, int64(m.Cfg.NEmbd)}, torch.Float32, m.Device)
		logits, err := m.Continue(ctx, h, 1, prefix)
		logits.Close()
		return err
	})
}

// TestForwardSDPAMatchesHF: the forward pass with attention through
// at::scaled_dot_product_attention (what CUDA runs) matches HF on the CPU, right- and
// left-padded (left padding gives query rows with no key, which SDPA alone would make NaN).
func TestForwardSDPAMatchesHF(t *testing.T) {
	r := makeRef(t, "st")
	m, err := Load(r.dir, torch.Float32, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	defer torch.SetSDPA(torch.SetSDPA(torch.SDPAAll))
	seqs := [][]int{r.ids(t, 0), r.ids(t, 1), r.ids(t, 2)}
	for _, left := range []bool{false, true} {
		out, err := m.Forward(context.Background(), seqs, Request{Full: true, LeftPad: left})
		if err != nil {
			t.Fatal(err)
		}
		logits := readAll(t, out.Logits)
		last := readAll(t, out.Resid[m.Cfg.NLayer-1])
		for b, q := range seqs {
			what := fmt.Sprintf("SDPA leftpad=%v seq %d", left, b)
			want, _ := r.f32(t, fmt.Sprintf("logits.%d", b))
			compare(t, what+" logits", rowsOf(logits, b, out.T, m.Cfg.VocabSize, out.Offset[b], len(q)), want, 1e-4)
			want, _ = r.f32(t, fmt.Sprintf("resid.%d.%d", b, m.Cfg.NLayer-1))
			compare(t, what+" last residual", rowsOf(last, b, out.T, m.Cfg.NEmbd, out.Offset[b], len(q)), want, 1e-4)
		}
		out.Close()
	}
}
