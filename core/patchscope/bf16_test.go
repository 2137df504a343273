package patchscope

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// At the last layer logit lens decodes the source's own final residual, so surprisal and
// paper_surprisal are both −ln p_source(y). In bfloat16 the source logits come from the lm_head
// matmul and the paper-surprisal logit from LogitsAt, which rounds to bfloat16 the way the matmul
// does (float32 accumulation, one rounding): they agree to float32 precision. (Without that
// rounding they differed by up to 0.0068 here, and paper_surprisal could go negative.)
func TestBFloat16LastLayerConsistency(t *testing.T) {
	tinyModel(t) // makes the model folder
	m, err := gptj.Load(modelDir, torch.BFloat16, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r := rand.New(rand.NewPCG(5, 6))
	var prompts [][]int
	for i := 0; i < 12; i++ {
		prompts = append(prompts, randomTokens(r, 3+r.IntN(12)))
	}
	res, err := Evaluate(context.Background(), m, Request{Prompts: prompts, Layers: []int{m.Cfg.NLayer - 1},
		Methods: []Method{{Name: "logitlens", Kind: KindLogitLens}}, Positions: Positions{Mode: PosRandom}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	mr := res.Methods[0]
	worst := 0.0
	for i := range mr.Prec1 {
		if mr.Prec1[i] != 1 {
			t.Fatalf("prompt %d: bf16 logit lens at the last layer has prec1 %v", i, mr.Prec1[i])
		}
		d := math.Abs(float64(mr.Surprisal[i] - mr.PaperSurprisal[i]))
		worst = math.Max(worst, d)
		if mr.PaperSurprisal[i] < -1e-3 {
			t.Fatalf("prompt %d: negative paper_surprisal %v", i, mr.PaperSurprisal[i])
		}
	}
	t.Logf("bf16: max |surprisal − paper_surprisal| at the last layer = %.3g", worst)
	if worst > 1e-4 {
		t.Fatalf("bf16: surprisal and paper_surprisal differ by %.3g at the last layer", worst)
	}
}
