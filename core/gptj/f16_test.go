package gptj

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/simplescope/simplescope/core/torch"
)

// TestFloat16 compares a float16 forward on the CPU with HF's float16 run of the same checkpoint
// (testdata/hf_gptj.py writes f16.logits and f16.resid for every spec; this uses "st"). float16
// keeps 11 significant bits (one ulp = 2^-10 of the value's binade, ~0.1%); both sides run the
// same ATen matmuls but round at different points (fused vs unfused gelu and rotary, where the
// attention scores are upcast), so they differ by a few ulps. Measured here: one ulp of the
// logits (0.0039 for logits in [2, 4), ~0.11% of the largest) and a few of the residuals. The
// bound is 1% of the largest value (~10 ulps), five times tighter than bfloat16's 5% and well
// below the tens of percent a real bug (a wrong rotary, mask, layer norm or residual, or an
// overflow) causes.
func TestFloat16(t *testing.T) {
	r := makeRef(t, "st")
	m, err := Load(r.dir, torch.Float16, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := 0; i < 3; i++ {
		seq := r.ids(t, i)
		out, err := m.Forward(context.Background(), [][]int{seq}, Request{Full: true})
		if err != nil {
			t.Fatal(err)
		}
		got := readAll(t, out.Logits)
		want, _ := r.f32(t, fmt.Sprintf("f16.logits.%d", i))
		scale := maxAbs(want)
		compare(t, fmt.Sprintf("f16 logits seq %d (scale %.2f)", i, scale), got, want, 0.01*scale)
		t.Logf("f16 seq %d: max |ours − HF f16| = %.3g (%.3f%% of the largest logit %.2f)", i, maxDiff(got, want), 100*maxDiff(got, want)/scale, scale)
		for l := 0; l < r.nLayer; l++ {
			res := readAll(t, out.Resid[l])
			ref, _ := r.f32(t, fmt.Sprintf("f16.resid.%d.%d", i, l))
			s := maxAbs(ref)
			compare(t, fmt.Sprintf("f16 resid seq %d layer %d (scale %.2f)", i, l, s), res, ref, 0.01*s)
		}
		out.Close()
	}
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	return m
}

func maxDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}
