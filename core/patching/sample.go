package patching

import (
	"github.com/simplescope/simplescope/core/errs"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/simplescope/simplescope/core/torch"
)

// Sampler picks the next token: greedy (argmax) unless Sample. With Sample, the logits are
// divided by Temperature, cut to the TopK most likely (0: all) and then to the smallest set whose
// probability reaches TopP (1: all), in that order (as HF's warpers do), and a token is drawn
// from what is left. Row i's draws come from its own stream seeded by (Seed, i), so a row's
// tokens do not depend on which other rows share its batch.
type Sampler struct {
	Sample      bool
	Temperature float64
	TopK        int
	TopP        float64
	Seed        uint64
}

func (sp Sampler) check() error {
	if !sp.Sample {
		return nil
	}
	if !(sp.Temperature > 0) || math.IsInf(sp.Temperature, 0) {
		return errs.Input("temperature %v: want a finite number > 0", sp.Temperature)
	}
	if sp.TopK < 0 {
		return errs.Input("top_k %d: want >= 0 (0: no cut)", sp.TopK)
	}
	if !(sp.TopP > 0 && sp.TopP <= 1) {
		return errs.Input("top_p %v: want a number in (0, 1]", sp.TopP)
	}
	return nil
}

// choose returns the next token of every active row (logits (A, V) float32 in cache order;
// active[a] is the batch row, idx[b] the row; step counts the tokens chosen before).
func (opt *GenOptions) choose(s *torch.Scope, logits *torch.Tensor, active, idx []int, step int) ([]int, error) {
	if !opt.Sample {
		top, err := s.Argmax(logits, 1, false).Int64s()
		if err != nil {
			return nil, err
		}
		out := make([]int, len(top))
		for a, t := range top {
			out[a] = int(t)
		}
		return out, nil
	}
	flat, err := logits.Float32s()
	if err != nil {
		return nil, err
	}
	V := len(flat) / len(active)
	out := make([]int, len(active))
	for a, b := range active {
		rng := rand.New(rand.NewPCG(opt.Seed, uint64(idx[b])<<20|uint64(step)))
		out[a] = opt.draw(flat[a*V:(a+1)*V], rng)
	}
	return out, nil
}

// draw samples one token from logits (V) under the sampler's warpers.
func (sp Sampler) draw(logits []float32, rng *rand.Rand) int {
	ids := make([]int, len(logits))
	for i := range ids {
		ids[i] = i
	}
	sort.SliceStable(ids, func(a, b int) bool { return logits[ids[a]] > logits[ids[b]] })
	if sp.TopK > 0 && sp.TopK < len(ids) {
		ids = ids[:sp.TopK]
	}
	probs := make([]float64, len(ids))
	top := float64(logits[ids[0]])
	sum := 0.0
	for k, i := range ids {
		probs[k] = math.Exp((float64(logits[i]) - top) / sp.Temperature)
		sum += probs[k]
	}
	keep, cum := len(ids), 0.0
	for k := range probs {
		probs[k] /= sum
		cum += probs[k]
		if cum >= sp.TopP && keep == len(ids) {
			keep = k + 1
		}
	}
	ids, probs = ids[:keep], probs[:keep]
	u := rng.Float64() * cum0(probs)
	for k, p := range probs {
		if u < p {
			return ids[k]
		}
		u -= p
	}
	return ids[len(ids)-1]
}

func cum0(p []float64) float64 {
	t := 0.0
	for _, v := range p {
		t += v
	}
	return t
}
