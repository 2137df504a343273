package patchscope

import (
	"fmt"
	"sort"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// The affine-mapping baseline (Patchscopes §4.1): a map fitted per layer ℓ by least squares
// takes the layer-ℓ hidden state h to an estimate of the last block's output, h·W_ℓ + b_ℓ, which
// the final layer norm and the unembedding decode. Like the logit lens its continuation runs no
// block (start = L); unlike it, each layer's rows are transformed first, so an affine method's
// items are grouped by layer (chunk.groups).

// Affine is one layer's map h ↦ h·W + B: W (C, C) and B (C), float32 on the model's device. The
// method does not own them: whoever built the Method closes them after the evaluation.
type Affine struct{ W, B *torch.Tensor }

// validateAffine checks what does not depend on the model's width: there is a map, every map's
// layer is in range and its tensors are present.
func (m Method) validateAffine(nLayer int) error {
	if len(m.Affine) == 0 {
		return fmt.Errorf("method %q: an affine method needs at least one map", m.Name)
	}
	for l, a := range m.Affine {
		if l < 0 || l >= nLayer {
			return fmt.Errorf("method %q: affine map for layer %d, out of range [0, %d)", m.Name, l, nLayer)
		}
		if a.W == nil || a.B == nil {
			return fmt.Errorf("method %q: affine map for layer %d lacks W or b", m.Name, l)
		}
	}
	return nil
}

// checkAffine checks every affine method against the model's width nEmbd and the requested
// layers: each requested layer has a map, W is (nEmbd, nEmbd) and b (nEmbd), both float32.
func (r *Request) checkAffine(nEmbd int) error {
	C := int64(nEmbd)
	for _, m := range r.Methods {
		if m.Kind != KindAffine {
			continue
		}
		for _, l := range r.Layers {
			if _, ok := m.Affine[l]; !ok {
				return fmt.Errorf("method %q: no affine map for layer %d (maps given for layers %v)", m.Name, l, m.affineLayers())
			}
		}
		for _, l := range m.affineLayers() {
			a := m.Affine[l]
			if ws := a.W.Shape(); len(ws) != 2 || ws[0] != C || ws[1] != C {
				return fmt.Errorf("method %q: affine map for layer %d: W has shape %s, want [%d, %d] (n_embd, n_embd)", m.Name, l, torch.ShapeString(ws), C, C)
			}
			if bs := a.B.Shape(); len(bs) != 1 || bs[0] != C {
				return fmt.Errorf("method %q: affine map for layer %d: b has shape %s, want [%d] (n_embd)", m.Name, l, torch.ShapeString(bs), C)
			}
			if a.W.DType() != torch.Float32 || a.B.DType() != torch.Float32 {
				return fmt.Errorf("method %q: affine map for layer %d: W and b must be float32", m.Name, l)
			}
		}
	}
	return nil
}

// affineLayers lists the layers the method has maps for, sorted.
func (m Method) affineLayers() []int {
	out := make([]int, 0, len(m.Affine))
	for l := range m.Affine {
		out = append(out, l)
	}
	sort.Ints(out)
	return out
}

// applyAffine returns h·W + b (N, C) in h's dtype: the map runs in float32 (the fit's
// precision), whatever the model's dtype.
func applyAffine(s *torch.Scope, h *torch.Tensor, a *Affine) *torch.Tensor {
	dt := h.DType()
	x := h
	if dt != torch.Float32 {
		x = s.To(h, torch.Float32, h.Device())
	}
	y := s.Add(s.Matmul(x, a.W), a.B)
	if dt != torch.Float32 {
		y = s.To(y, dt, h.Device())
	}
	return y
}

// emptyPrefix is the prefix of a continuation that runs no block.
func emptyPrefix() *gptj.Prefix { return &gptj.Prefix{} }

// affineRows returns h·W + b as a new tensor the caller closes.
func affineRows(h *torch.Tensor, a *Affine) (*torch.Tensor, error) {
	s := torch.NewScope()
	defer s.Close()
	y := applyAffine(s, h, a)
	if err := s.Err(); err != nil {
		return nil, err
	}
	return s.Keep(y), nil
}
