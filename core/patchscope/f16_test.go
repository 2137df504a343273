package patchscope

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// float16 evaluation on the CPU. At the last layer the logit lens decodes the source's own final
// residual, so prec1 is 1 and surprisal equals paper_surprisal (−ln p_source(y) both ways; the
// paper-surprisal logit comes from LogitsAt, rounded as the lm_head matmul rounds). Over every
// layer and method the float16 metrics are float32's up to rounding: float16's 11 bits put logits
// ~1e-3 relative off (a few ulps), so surprisals move by ~1e-3 nats and a top-1 changes only at
// near-ties; the bounds (mean surprisal within 0.05 nats, prec1 equal on ≥ 90% of items) leave
// room for those while a real float16 fault (overflow to inf, a missing upcast) breaks them.
func TestFloat16Evaluate(t *testing.T) {
	tinyModel(t) // makes the model folder
	m16, err := gptj.Load(modelDir, torch.Float16, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m16.Close()
	m32 := tinyModel(t)
	r := rand.New(rand.NewPCG(15, 16))
	var prompts [][]int
	for i := 0; i < 12; i++ {
		prompts = append(prompts, randomTokens(r, 3+r.IntN(12)))
	}
	long := []int{3, 4, 5, 6, 7, 8}
	req := Request{Prompts: prompts, Positions: Positions{Mode: PosRandom}, Seed: 2, Methods: []Method{
		{Name: "logitlens", Kind: KindLogitLens},
		{Name: "patch", Kind: KindPatch, Target: long, Placeholder: len(long) - 1, TargetMode: TargetSame}}}
	a, err := Evaluate(context.Background(), m32, req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Evaluate(context.Background(), m16, req)
	if err != nil {
		t.Fatal(err)
	}
	L := m16.Cfg.NLayer
	for mi, mr := range b.Methods {
		ref := a.Methods[mi]
		same, worst := 0, 0.0
		var s16, s32 float64
		for k := range mr.Prec1 {
			if mr.Prec1[k] == ref.Prec1[k] {
				same++
			}
			if math.IsNaN(float64(mr.Surprisal[k])) || math.IsInf(float64(mr.Surprisal[k]), 0) {
				t.Fatalf("%s item %d: surprisal %v in float16", mr.Name, k, mr.Surprisal[k])
			}
			s16 += float64(mr.Surprisal[k])
			s32 += float64(ref.Surprisal[k])
			worst = math.Max(worst, math.Abs(float64(mr.Surprisal[k]-ref.Surprisal[k])))
			if k%L == L-1 && mr.Name == "logitlens" {
				if mr.Prec1[k] != 1 {
					t.Fatalf("item %d: float16 logit lens at the last layer has prec1 %v", k, mr.Prec1[k])
				}
				if d := math.Abs(float64(mr.Surprisal[k] - mr.PaperSurprisal[k])); d > 1e-3 {
					t.Fatalf("item %d: float16 surprisal and paper_surprisal differ by %.3g at the last layer", k, d)
				}
			}
		}
		n := float64(len(mr.Prec1))
		t.Logf("%s: float16 prec1 equals float32's on %d/%d items; max |Δ surprisal| %.3g nats", mr.Name, same, len(mr.Prec1), worst)
		if float64(same) < 0.9*n {
			t.Errorf("%s: float16 prec1 equals float32's on only %d of %d items", mr.Name, same, len(mr.Prec1))
		}
		if d := math.Abs(s16-s32) / n; d > 0.05 {
			t.Errorf("%s: mean surprisal float16 vs float32 differs by %.3g nats", mr.Name, d)
		}
	}
}
