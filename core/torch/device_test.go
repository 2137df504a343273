package torch

import (
	"math"
	"math/rand"
	"testing"
)

// attentionInputs makes q (B, H, T, D) and three key/value parts: a shared prefix (1, H, P0, D),
// a per-row cache (B, H, P1, D) and the rows' own keys (B, H, T, D), plus a mask over the
// P0+P1+T keys with every query row allowed at least one key (and, when fullyMasked, one row of
// the first batch entry allowed none).
func attentionInputs(t *testing.T, s *Scope, dt DType, fullyMasked bool) (q *Tensor, ks, vs []*Tensor, mask *Tensor) {
	t.Helper()
	r := rand.New(rand.NewSource(7))
	const B, H, T, D, P0, P1 = 3, 2, 4, 8, 5, 2
	mk := func(shape ...int64) *Tensor {
		return ScopeFromSlice(s, randF32(r, int(numel(shape))), shape, dt, CPU)
	}
	q = mk(B, H, T, D)
	ks = []*Tensor{mk(1, H, P0, D), mk(B, H, P1, D), mk(B, H, T, D)}
	vs = []*Tensor{mk(1, H, P0, D), mk(B, H, P1, D), mk(B, H, T, D)}
	K := P0 + P1 + T
	m := make([]uint8, B*T*K)
	for b := 0; b < B; b++ {
		for i := 0; i < T; i++ {
			for j := 0; j < K; j++ {
				if j < P0+P1+i+1 && r.Intn(4) != 0 || j == P0+P1+i {
					m[(b*T+i)*K+j] = 1
				}
			}
		}
	}
	if fullyMasked {
		for j := 0; j < K; j++ {
			m[1*K+j] = 0 // batch 0, query 1: no key (a padding row)
		}
	}
	mask = ScopeFromSlice(s, m, []int64{B, 1, T, int64(K)}, Bool, CPU)
	return q, ks, vs, mask
}

// TestAttentionPartsMatchesConcat: attending to a shared prefix, a per-row cache and the own keys
// as parts equals attending to them concatenated, the prefix expanded to every row (the way
// blockForward did it before, which materialised B copies of the prefix).
func TestAttentionPartsMatchesConcat(t *testing.T) {
	for _, tc := range []struct {
		dt  DType
		tol float64
	}{{Float32, 1e-6}, {BFloat16, 2e-2}} {
		t.Run(tc.dt.String(), func(t *testing.T) {
			s := NewScope()
			defer s.Close()
			q, ks, vs, mask := attentionInputs(t, s, tc.dt, false)
			B := q.Shape()[0]
			cat := func(ts []*Tensor) *Tensor {
				return s.Cat([]*Tensor{s.Expand(ts[0], B, -1, -1, -1), ts[1], ts[2]}, 2)
			}
			want := s.Attention(q, cat(ks), cat(vs), mask)
			got := s.AttentionParts(q, ks, vs, mask)
			// one part is Attention itself, bit for bit
			one := s.AttentionParts(q, ks[2:], vs[2:], nil)
			plain := s.Attention(q, ks[2], vs[2], nil)
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			g, _ := got.Float32s()
			w, _ := want.Float32s()
			checkClose(t, "parts vs concatenated", g, w, tc.tol)
			o, _ := one.Float32s()
			p, _ := plain.Float32s()
			checkClose(t, "one part vs Attention", o, p, 0)
			if sh := got.Shape(); ShapeString(sh) != "[3, 2, 4, 8]" || got.DType() != tc.dt {
				t.Fatalf("shape %v dtype %s", sh, got.DType())
			}
		})
	}
}

// TestSDPAOnCPU: the scaled_dot_product_attention path (on CUDA by default) gives the explicit
// path's result within float32 rounding, and a query row with no allowed key (left padding)
// stays finite instead of spreading NaN.
func TestSDPAOnCPU(t *testing.T) {
	s := NewScope()
	defer s.Close()
	q, ks, vs, mask := attentionInputs(t, s, Float32, true)
	k := s.Cat([]*Tensor{s.Expand(ks[0], 3, -1, -1, -1), ks[1], ks[2]}, 2)
	v := s.Cat([]*Tensor{s.Expand(vs[0], 3, -1, -1, -1), vs[1], vs[2]}, 2)
	prev := SetSDPA(SDPANever)
	explicit := s.Attention(q, k, v, mask)
	SetSDPA(SDPAAll)
	sdpa := s.Attention(q, k, v, mask)
	SetSDPA(prev)
	if prev != SDPACUDA {
		t.Errorf("default SDPA mode %d, want %d (on CUDA only)", prev, SDPACUDA)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	e, _ := explicit.Float32s()
	g, _ := sdpa.Float32s()
	const D, T = 8, 4
	for i := range g {
		if math.IsNaN(float64(g[i])) || math.IsInf(float64(g[i]), 0) {
			t.Fatalf("SDPA output %d is %v", i, g[i])
		}
		b, row := i/(2*T*D), i/D%T // (B, H=2, T, D)
		if b == 0 && row == 1 {
			continue // the padding row: any finite value
		}
		if d := math.Abs(float64(g[i] - e[i])); d > 1e-5 {
			t.Fatalf("element %d: SDPA %v, explicit %v", i, g[i], e[i])
		}
	}
}

// TestTransferCounts: uploads and reads are counted, and those inside a marked hot loop apart.
func TestTransferCounts(t *testing.T) {
	s := NewScope()
	defer s.Close()
	c0 := TransferCounts()
	x := ScopeFromSlice(s, []float32{1, 2, 3}, []int64{3}, Float32, CPU)
	if _, err := x.Float32s(); err != nil {
		t.Fatal(err)
	}
	d := TransferCounts().Sub(c0)
	if d != (Transfers{Uploads: 1, Syncs: 1}) {
		t.Fatalf("one upload and one read outside a loop counted as %+v", d)
	}
	leave := HotLoop()
	y := s.Add(x, x) // device work only
	c1 := TransferCounts()
	_ = ScopeFromSlice(s, []int64{0}, []int64{1}, Int64, CPU)
	_, _ = y.Int64s()
	leave()
	if d := TransferCounts().Sub(c1); d != (Transfers{Uploads: 1, Syncs: 1, HotUploads: 1, HotSyncs: 1}) {
		t.Fatalf("one upload and one read inside a hot loop counted as %+v", d)
	}
	c2 := TransferCounts()
	_, _ = y.Float32s()
	if d := TransferCounts().Sub(c2); d.HotSyncs != 0 {
		t.Fatalf("a read after the loop counted inside it: %+v", d)
	}
}

// TestInjectOOM: the test hook makes Linear fail as out of memory above a batch of rows, which
// the batch-halving policy recognises; restoring turns it off.
func TestInjectOOM(t *testing.T) {
	s := NewScope()
	defer s.Close()
	r := rand.New(rand.NewSource(1))
	w := ScopeFromSlice(s, randF32(r, 12), []int64{3, 4}, Float32, CPU)
	x := func(shape ...int64) *Tensor {
		return ScopeFromSlice(s, randF32(r, int(numel(shape))), shape, Float32, CPU)
	}
	big, small, flat := x(5, 2, 4), x(4, 2, 4), x(9, 4)
	n0 := InjectedOOMs()
	restore := InjectOOM(4)
	for _, tc := range []struct {
		in      *Tensor
		wantOOM bool
	}{{small, false}, {flat, false}, {big, true}} {
		ts := NewScope()
		ts.Linear(tc.in, w, nil)
		if err := ts.Err(); IsOOM(err) != tc.wantOOM || (err != nil) != tc.wantOOM {
			t.Errorf("input %v: error %v, want out of memory: %v", tc.in.Shape(), err, tc.wantOOM)
		}
		ts.Close()
	}
	restore()
	if n := InjectedOOMs() - n0; n != 1 {
		t.Errorf("%d failures injected, want 1", n)
	}
	ts := NewScope()
	defer ts.Close()
	if ts.Linear(big, w, nil); ts.Err() != nil {
		t.Errorf("after restore: %v", ts.Err())
	}
}

// TestCUDAMemoryWithoutCUDA: the memory figures of a device that is not there are an error, not
// a crash or zeros the budget would trust.
func TestCUDAMemoryWithoutCUDA(t *testing.T) {
	n, err := CUDADeviceCount()
	if err != nil || n > 0 {
		t.Skipf("CUDA devices: %d (%v)", n, err)
	}
	if m, err := CUDAMemory(0); err == nil {
		t.Errorf("CUDAMemory(0) without CUDA: %+v, no error", m)
	}
}
