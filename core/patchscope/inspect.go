package patchscope

import (
	"context"

	"github.com/simplescope/simplescope/core/errs"
	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// TopK is the k most likely next tokens of one decoding.
type TopK struct {
	IDs      []int64
	LogProbs []float32
}

// Inspection is the top-k of every method at every layer for one prompt position.
type Inspection struct {
	Position int
	Layers   []int
	Source   TopK              // the model's own prediction at the position
	Methods  map[string][]TopK // method -> per layer (grid methods: target layer = source layer)
}

// Inspect decodes prompt's residual at position pos (every layer in layers) with each method
// and returns the top-k tokens. Grid methods are read at target layer = source layer. ctx is
// checked between blocks.
func Inspect(ctx context.Context, m *gptj.Model, prompt []int, pos int, layers []int, methods []Method, k int) (*Inspection, error) {
	L := m.Cfg.NLayer
	if len(layers) == 0 {
		for l := 0; l < L; l++ {
			layers = append(layers, l)
		}
	}
	if len(prompt) == 0 {
		return nil, errs.Input("the prompt is empty (no tokens)")
	}
	req := Request{Prompts: [][]int{prompt}, Layers: layers, Methods: methods, Positions: Positions{Mode: PosGiven, PerPrompt: []int{pos}}}
	if err := req.validate(L, m.Cfg.VocabSize, m.Cfg.NPositions); err != nil {
		return nil, err
	}
	if k < 1 || k > m.Cfg.VocabSize {
		return nil, errs.Input("k = %d out of range [1, %d]", k, m.Cfg.VocabSize)
	}
	pts := []gptj.Point{{Seq: 0, Pos: pos}}
	want := map[int][]gptj.Point{}
	for _, l := range layers {
		want[l] = pts
	}
	out, err := m.Forward(ctx, [][]int{prompt}, gptj.Request{Resid: want, LogitPoints: pts})
	if err != nil {
		return nil, err
	}
	defer out.Close()
	ins := &Inspection{Position: pos, Layers: layers, Methods: map[string][]TopK{}}
	if ins.Source, err = topK(out.Logits, k); err != nil {
		return nil, err
	}
	for _, meth := range methods {
		prefix := &gptj.Prefix{}
		if meth.Kind == KindPatch {
			if prefix, err = m.ComputePrefix(ctx, meth.Target[:meth.Placeholder]); err != nil {
				return nil, err
			}
		}
		for _, l := range layers {
			start := L
			if meth.Kind == KindPatch {
				t := l
				switch meth.TargetMode {
				case TargetLast:
					t = L - 1
				case TargetFixed:
					t = meth.TargetLayer
				}
				start = t + 1
			}
			logits, err := m.Continue(ctx, out.Resid[l], start, prefix)
			if err != nil {
				prefix.Close()
				return nil, err
			}
			tk, err := topK(logits, k)
			logits.Close()
			if err != nil {
				prefix.Close()
				return nil, err
			}
			ins.Methods[meth.Name] = append(ins.Methods[meth.Name], tk)
		}
		prefix.Close()
	}
	return ins, nil
}

func topK(logits *torch.Tensor, k int) (TopK, error) {
	s := torch.NewScope()
	defer s.Close()
	v, i := s.TopK(s.LogSoftmax(logits, -1), int64(k), -1)
	if err := s.Err(); err != nil {
		return TopK{}, err
	}
	ids, err := i.Int64s()
	if err != nil {
		return TopK{}, err
	}
	lp, err := v.Float32s()
	if err != nil {
		return TopK{}, err
	}
	return TopK{IDs: ids, LogProbs: lp}, nil
}
