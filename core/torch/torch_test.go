package torch

import (
	"errors"
	"math"
	"math/rand"
	"strings"
	"sync"
	"testing"
)

func randF32(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func maxDiff(a, b []float32) (float64, int) {
	m, at := 0.0, -1
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if d > m || math.IsNaN(d) {
			m, at = d, i
		}
	}
	return m, at
}

func checkClose(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	if d, i := maxDiff(got, want); d > tol {
		t.Fatalf("%s: max abs diff %.3g at %d (got %v want %v), tolerance %.1g", name, d, i, got[i], want[i], tol)
	}
}

// Go references, written independently of ATen.
func refMatmul(a, b []float32, m, k, n int) []float32 {
	out := make([]float32, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += float64(a[i*k+p]) * float64(b[p*n+j])
			}
			out[i*n+j] = float32(s)
		}
	}
	return out
}

func refLayerNorm(x, w, b []float32, rows, c int, eps float64) []float32 {
	out := make([]float32, len(x))
	for r := 0; r < rows; r++ {
		row := x[r*c : (r+1)*c]
		var mean, v float64
		for _, e := range row {
			mean += float64(e)
		}
		mean /= float64(c)
		for _, e := range row {
			v += (float64(e) - mean) * (float64(e) - mean)
		}
		v /= float64(c)
		for j, e := range row {
			out[r*c+j] = float32((float64(e)-mean)/math.Sqrt(v+eps)*float64(w[j]) + float64(b[j]))
		}
	}
	return out
}

func TestOpsAgainstGoReferences(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	s := NewScope()
	defer s.Close()
	const m, k, n = 5, 7, 3
	a, b := randF32(r, m*k), randF32(r, k*n)
	ta := ScopeFromSlice(s, a, []int64{m, k}, Float32, CPU)
	tb := ScopeFromSlice(s, b, []int64{k, n}, Float32, CPU)
	x := randF32(r, 4*6)
	w, bb := randF32(r, 6), randF32(r, 6)
	tx := ScopeFromSlice(s, x, []int64{4, 6}, Float32, CPU)
	tw := ScopeFromSlice(s, w, []int64{6}, Float32, CPU)
	tbias := ScopeFromSlice(s, bb, []int64{6}, Float32, CPU)
	wl := randF32(r, 3*6)
	twl := ScopeFromSlice(s, wl, []int64{3, 6}, Float32, CPU)
	bl := randF32(r, 3)
	tbl := ScopeFromSlice(s, bl, []int64{3}, Float32, CPU)

	tests := []struct {
		name string
		got  *Tensor
		want func() []float32
	}{
		{"matmul", s.Matmul(ta, tb), func() []float32 { return refMatmul(a, b, m, k, n) }},
		{"layer_norm", s.LayerNorm(tx, tw, tbias, 1e-5), func() []float32 { return refLayerNorm(x, w, bb, 4, 6, 1e-5) }},
		{"linear", s.Linear(tx, twl, tbl), func() []float32 {
			wt := make([]float32, 6*3)
			for i := 0; i < 3; i++ {
				for j := 0; j < 6; j++ {
					wt[j*3+i] = wl[i*6+j]
				}
			}
			out := refMatmul(x, wt, 4, 6, 3)
			for i := range out {
				out[i] += bl[i%3]
			}
			return out
		}},
		{"gelu_tanh", s.GeluTanh(tx), func() []float32 {
			out := make([]float32, len(x))
			for i, v := range x {
				f := float64(v)
				out[i] = float32(0.5 * f * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(f+0.044715*f*f*f))))
			}
			return out
		}},
		{"gelu", s.Gelu(tx), func() []float32 {
			out := make([]float32, len(x))
			for i, v := range x {
				f := float64(v)
				out[i] = float32(0.5 * f * (1 + math.Erf(f/math.Sqrt2)))
			}
			return out
		}},
		{"silu", s.Silu(tx), func() []float32 {
			out := make([]float32, len(x))
			for i, v := range x {
				f := float64(v)
				out[i] = float32(f / (1 + math.Exp(-f)))
			}
			return out
		}},
		{"rms_norm", s.RMSNorm(tx, tw, 1e-6), func() []float32 {
			out := make([]float32, len(x))
			for r := 0; r < 4; r++ {
				var ms float64
				for j := 0; j < 6; j++ {
					ms += float64(x[r*6+j]) * float64(x[r*6+j])
				}
				ms /= 6
				for j := 0; j < 6; j++ {
					out[r*6+j] = float32(float64(x[r*6+j]) / math.Sqrt(ms+1e-6) * float64(w[j]))
				}
			}
			return out
		}},
		{"rms_norm plus one (Gemma)", s.RMSNormPlusOne(tx, tw, 1e-6), func() []float32 {
			out := make([]float32, len(x))
			for r := 0; r < 4; r++ {
				var ms float64
				for j := 0; j < 6; j++ {
					ms += float64(x[r*6+j]) * float64(x[r*6+j])
				}
				ms /= 6
				for j := 0; j < 6; j++ {
					out[r*6+j] = float32(float64(x[r*6+j]) / math.Sqrt(ms+1e-6) * (1 + float64(w[j])))
				}
			}
			return out
		}},
		{"rms_norm without weight", s.RMSNorm(tx, nil, 1e-6), func() []float32 {
			out := make([]float32, len(x))
			for r := 0; r < 4; r++ {
				var ms float64
				for j := 0; j < 6; j++ {
					ms += float64(x[r*6+j]) * float64(x[r*6+j])
				}
				ms /= 6
				for j := 0; j < 6; j++ {
					out[r*6+j] = float32(float64(x[r*6+j]) / math.Sqrt(ms+1e-6))
				}
			}
			return out
		}},
		{"softmax", s.Softmax(tx, 1), func() []float32 {
			out := make([]float32, len(x))
			for r := 0; r < 4; r++ {
				var z float64
				for j := 0; j < 6; j++ {
					z += math.Exp(float64(x[r*6+j]))
				}
				for j := 0; j < 6; j++ {
					out[r*6+j] = float32(math.Exp(float64(x[r*6+j])) / z)
				}
			}
			return out
		}},
		{"log_softmax", s.LogSoftmax(tx, 1), func() []float32 {
			out := make([]float32, len(x))
			for r := 0; r < 4; r++ {
				var z float64
				for j := 0; j < 6; j++ {
					z += math.Exp(float64(x[r*6+j]))
				}
				for j := 0; j < 6; j++ {
					out[r*6+j] = float32(float64(x[r*6+j]) - math.Log(z))
				}
			}
			return out
		}},
		{"transpose+contiguous", s.Contiguous(s.Transpose(tx, 0, 1)), func() []float32 {
			out := make([]float32, len(x))
			for i := 0; i < 4; i++ {
				for j := 0; j < 6; j++ {
					out[j*4+i] = x[i*6+j]
				}
			}
			return out
		}},
		{"narrow", s.Narrow(tx, 1, 2, 3), func() []float32 {
			var out []float32
			for i := 0; i < 4; i++ {
				out = append(out, x[i*6+2:i*6+5]...)
			}
			return out
		}},
		{"cat", s.Cat([]*Tensor{tx, tx}, 0), func() []float32 { return append(append([]float32{}, x...), x...) }},
		{"add_mul_scalar", s.MulScalar(s.AddScalar(tx, 1.5), -2), func() []float32 {
			out := make([]float32, len(x))
			for i, v := range x {
				out[i] = (v + 1.5) * -2
			}
			return out
		}},
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.got.Float32s()
			if err != nil {
				t.Fatal(err)
			}
			checkClose(t, tc.name, got, tc.want(), 1e-5)
		})
	}
}

func TestIndexOps(t *testing.T) {
	s := NewScope()
	defer s.Close()
	data := make([]float32, 5*3)
	for i := range data {
		data[i] = float32(i)
	}
	x := ScopeFromSlice(s, data, []int64{5, 3}, Float32, CPU)
	idx := ScopeFromSlice(s, []int64{4, 0}, []int64{2}, Int64, CPU)
	sel := s.IndexSelect(x, 0, idx)
	src := s.Full([]int64{2, 3}, -1, Float32, CPU)
	cp := s.IndexCopy(x, 0, idx, src)
	am := s.Argmax(sel, 1, false)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	got, _ := sel.Float32s()
	checkClose(t, "index_select", got, append(append([]float32{}, data[12:15]...), data[0:3]...), 0)
	gotCp, _ := cp.Float32s()
	want := append([]float32{}, data...)
	for _, row := range []int{4, 0} {
		for j := 0; j < 3; j++ {
			want[row*3+j] = -1
		}
	}
	checkClose(t, "index_copy", gotCp, want, 0)
	orig, _ := x.Float32s()
	checkClose(t, "index_copy leaves input", orig, data, 0)
	ids, _ := am.Int64s()
	if len(ids) != 2 || ids[0] != 2 || ids[1] != 2 {
		t.Fatalf("argmax of increasing rows = %v, want the last column", ids)
	}
}

func TestDTypeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	x := randF32(r, 64)
	for _, tc := range []struct {
		dt  DType
		tol float64 // relative precision of the format
	}{{Float32, 0}, {Float16, 1e-3}, {BFloat16, 8e-3}, {Float64, 0}} {
		t.Run(tc.dt.String(), func(t *testing.T) {
			s := NewScope()
			defer s.Close()
			tt := ScopeFromSlice(s, x, []int64{8, 8}, tc.dt, CPU)
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			if tt.DType() != tc.dt {
				t.Fatalf("dtype %v, want %v", tt.DType(), tc.dt)
			}
			got, err := tt.Float32s()
			if err != nil {
				t.Fatal(err)
			}
			for i := range x {
				if d := math.Abs(float64(got[i] - x[i])); d > tc.tol*math.Abs(float64(x[i]))+1e-7 {
					t.Fatalf("element %d: %v -> %v (diff %.3g)", i, x[i], got[i], d)
				}
			}
			b, err := tt.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != 64*tc.dt.Size() {
				t.Fatalf("Bytes: %d bytes, want %d", len(b), 64*tc.dt.Size())
			}
		})
	}
}

func TestShimErrorsReachGo(t *testing.T) {
	s := NewScope()
	defer s.Close()
	a := s.Zeros([]int64{2, 3}, Float32, CPU)
	b := s.Zeros([]int64{4, 5}, Float32, CPU)
	c := s.Matmul(a, b)
	if c != nil || s.Err() == nil {
		t.Fatal("matmul of (2,3) by (4,5) succeeded")
	}
	msg := s.Err().Error()
	if !strings.Contains(msg, "matmul") || !strings.Contains(msg, "cannot be multiplied") {
		t.Fatalf("error does not carry ATen's message: %q", msg)
	}
	// later ops are skipped, not run on nil
	if d := s.Add(a, b); d != nil {
		t.Fatal("op ran after an error")
	}
	if _, err := FromSlice([]float32{1, 2, 3}, []int64{2, 2}, Float32, CPU); err == nil {
		t.Fatal("FromSlice accepted 3 values for shape (2,2)")
	}
	if _, err := FromSlice([]float32{1}, []int64{1}, Float32, CUDA(7)); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("cuda:7 error = %v", err)
	}
	var closed *Tensor
	if _, err := closed.Float32s(); err == nil {
		t.Fatal("nil tensor read succeeded")
	}
}

func TestOOMIsRecognised(t *testing.T) {
	_, err := FromSlice([]float32{}, []int64{0}, Float32, CPU)
	if err != nil {
		t.Fatal(err)
	}
	s := NewScope()
	defer s.Close()
	// 2^62 bytes cannot be allocated anywhere.
	s.Zeros([]int64{1 << 30, 1 << 30}, Float32, CPU)
	if !IsOOM(s.Err()) {
		t.Fatalf("huge allocation error %v is not marked out-of-memory", s.Err())
	}
	if !errors.Is(s.Err(), ErrOOM) {
		t.Fatal("errors.Is(err, ErrOOM) false")
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Device
		ok   bool
	}{{"cpu", CPU, true}, {"cuda", CUDA(0), true}, {"cuda:3", CUDA(3), true}, {"gpu", Device{}, false}, {"cuda:x", Device{}, false}} {
		got, err := ParseDevice(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseDevice(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want DType
		ok   bool
	}{{"float32", Float32, true}, {"fp16", Float16, true}, {"bfloat16", BFloat16, true}, {"float8", 0, false}} {
		got, err := ParseDType(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseDType(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestConcurrentCreateFreeLeavesNoLiveTensors(t *testing.T) {
	before := LiveTensors()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				s := NewScope()
				x := ScopeFromSlice(s, []float32{float32(g), float32(i)}, []int64{2}, Float32, CPU)
				y := s.MulScalar(s.AddScalar(x, 1), 2)
				v, err := y.Float32s()
				if err == nil && (v[0] != (float32(g)+1)*2 || v[1] != (float32(i)+1)*2) {
					err = errors.New("wrong value under concurrency")
				}
				s.Close()
				if err != nil || s.Err() != nil {
					errs <- errors.Join(err, s.Err())
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if after := LiveTensors(); after != before {
		t.Fatalf("live tensors %d after 12000 creates and frees, want %d", after, before)
	}
}

func TestVersion(t *testing.T) {
	v, err := TorchVersion()
	if err != nil || !strings.HasPrefix(v, "2.") {
		t.Fatalf("TorchVersion() = %q, %v", v, err)
	}
	if n, err := CUDADeviceCount(); err != nil || n < 0 {
		t.Fatalf("CUDADeviceCount() = %d, %v", n, err)
	}
}

// The rules every Scope op follows (scope.go, op): the scope owns results, nil or closed inputs
// and errors short-circuit, and the first error is the one kept, as "op: torch: <ATen message>".
func TestScopeRules(t *testing.T) {
	before := LiveTensors()
	s := NewScope()
	x := s.Arange(0, 6, Float32, CPU)
	y := s.Reshape(x, 2, 3)
	v, i := s.TopK(y, 1, 1)
	c := s.Cat([]*Tensor{y, y}, 0)
	l := s.Linear(y, s.Zeros([]int64{4, 3}, Float32, CPU), nil) // a nil optional input is fine
	if err := s.Err(); err != nil || v == nil || i == nil || c == nil || l == nil {
		t.Fatalf("ops failed: %v", err)
	}
	kept := s.Keep(s.Neg(y))
	s.Free(c, nil)
	s.Close()
	if n := LiveTensors() - before; n != 1 {
		t.Fatalf("%d tensors alive after Close, want the kept one", n)
	}
	kept.Close()

	var closed *Tensor
	for _, tc := range []struct {
		name string
		run  func(s *Scope) *Tensor
		want string
	}{
		{"nil input", func(s *Scope) *Tensor { return s.Reshape(closed, 2) }, "torch reshape: input 0 is nil or closed"},
		{"closed input", func(s *Scope) *Tensor {
			a := s.Zeros([]int64{2}, Float32, CPU)
			s.Free(a)
			return s.Add(s.Zeros([]int64{2}, Float32, CPU), a)
		}, "torch add: input 1 is nil or closed"},
		{"no tensors", func(s *Scope) *Tensor { return s.Stack(nil, 0) }, "stack: no tensors"},
		{"shim error", func(s *Scope) *Tensor { return s.Reshape(s.Zeros([]int64{2, 3}, Float32, CPU), 4) }, "reshape: torch: "},
	} {
		s := NewScope()
		if got := tc.run(s); got != nil || s.Err() == nil || !strings.HasPrefix(s.Err().Error(), tc.want) {
			t.Errorf("%s: got %v, error %v; want nil and an error starting %q", tc.name, got, s.Err(), tc.want)
		}
		first := s.Err()
		if got := s.Transpose(s.Zeros([]int64{2}, Float32, CPU), 5, 6); got != nil || s.Err() != first {
			t.Errorf("%s: an op after the error ran or replaced the first error with %v", tc.name, s.Err())
		}
		s.Close()
	}
	if n := LiveTensors() - before; n != 0 {
		t.Fatalf("%d tensors leaked", n)
	}
}

// RotaryHalf is the NeoX / Llama rotation: within the first rot dims, dimension j < rot/2 pairs
// with j + rot/2 and the pair turns by angle θ_j; the rest pass through.
func TestRotaryHalf(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	s := NewScope()
	defer s.Close()
	const n, D, rot = 3, 10, 6
	x := randF32(r, n*D)
	ang := randF32(r, n*rot/2)
	sin, cos := make([]float32, len(ang)), make([]float32, len(ang))
	for i, a := range ang {
		sin[i], cos[i] = float32(math.Sin(float64(a))), float32(math.Cos(float64(a)))
	}
	got := s.RotaryHalf(ScopeFromSlice(s, x, []int64{n, D}, Float32, CPU),
		ScopeFromSlice(s, sin, []int64{n, rot / 2}, Float32, CPU), ScopeFromSlice(s, cos, []int64{n, rot / 2}, Float32, CPU), rot)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	want := append([]float32{}, x...)
	for i := 0; i < n; i++ {
		for j := 0; j < rot/2; j++ {
			a, b := float64(x[i*D+j]), float64(x[i*D+j+rot/2])
			c, sn := float64(cos[i*rot/2+j]), float64(sin[i*rot/2+j])
			want[i*D+j] = float32(a*c - b*sn)
			want[i*D+j+rot/2] = float32(b*c + a*sn)
		}
	}
	g, err := got.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	checkClose(t, "rotary_half", g, want, 1e-5)
	s.RotaryHalf(got, s.Narrow(got, 1, 0, 3), s.Narrow(got, 1, 0, 3), 7)
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "rotary dim 7") {
		t.Fatalf("odd rotary dim: error %v", err)
	}
}

// WindowMask keeps key k for query q when kpos > qpos - window, and ANDs the mask given.
func TestWindowMask(t *testing.T) {
	s := NewScope()
	defer s.Close()
	qpos := ScopeFromSlice(s, []int64{3, 4, 9, 10}, []int64{2, 2}, Int64, CPU)
	kpos := ScopeFromSlice(s, []int64{0, 1, 2, 3, 4}, []int64{1, 5}, Int64, CPU)
	base := make([]uint8, 2*2*5)
	for i := range base {
		base[i] = 1
	}
	base[0] = 0 // row 0, query 0, key 0 hidden by the mask
	mask := ScopeFromSlice(s, base, []int64{2, 1, 2, 5}, Bool, CPU)
	for _, withMask := range []bool{false, true} {
		mk := mask
		if !withMask {
			mk = nil
		}
		got := s.WindowMask(mk, qpos, kpos, 3)
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if sh := got.Shape(); len(sh) != 4 || sh[0] != 2 || sh[1] != 1 || sh[2] != 2 || sh[3] != 5 {
			t.Fatalf("shape %v, want [2 1 2 5]", sh)
		}
		v, err := ToSlice[uint8](s.To(got, Uint8, CPU))
		if err != nil {
			t.Fatal(err)
		}
		qs := []int64{3, 4, 9, 10}
		for i, q := range qs {
			for k := int64(0); k < 5; k++ {
				want := k > q-3
				if withMask && i == 0 && k == 0 {
					want = false
				}
				if (v[i*5+int(k)] == 1) != want {
					t.Fatalf("mask=%v query pos %d key pos %d: got %d, want %v", withMask, q, k, v[i*5+int(k)], want)
				}
			}
		}
	}
}
