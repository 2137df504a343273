package api

import (
	"github.com/simplescope/simplescope/core/errs"
	"github.com/simplescope/simplescope/core/patchscope"
	"github.com/simplescope/simplescope/core/torch"
)

// The affine-mapping baseline's method spec (docs/capi.md, method specs): kind "affine" with one
// map per source layer, each W [n_embd, n_embd] and b [n_embd] in the tensor-argument form.

// AffineMapSpec is one layer's map h ↦ h·W + b.
type AffineMapSpec struct {
	Layer int       `msgpack:"layer"`
	W     TensorArg `msgpack:"W"`
	B     TensorArg `msgpack:"b"`
}

// resolveAffine turns an affine spec into an engine method whose maps are float32 tensors on the
// model's device (closed by closeMethods). Shapes are checked here, naming the map at fault.
func (s *Session) resolveAffine(sp MethodSpec) (patchscope.Method, map[string]any, error) {
	m := patchscope.Method{Name: sp.Name, Kind: patchscope.KindAffine, Affine: map[int]patchscope.Affine{}}
	if len(sp.Maps) == 0 {
		return m, nil, errs.Input("method %q: kind affine needs maps (one {layer, W, b} per source layer)", sp.Name)
	}
	if sp.Target != "" || sp.TargetTokens != nil || sp.Placeholder != nil || sp.TargetLayer != nil {
		return m, nil, errs.Input("method %q: an affine method takes maps, not a target prompt, placeholder or target_layer", sp.Name)
	}
	L, C := s.Model.Cfg.NLayer, int64(s.Model.Cfg.NEmbd)
	ok := false
	defer func() {
		if !ok {
			closeAffine(m)
		}
	}()
	var layers []int
	for i, ms := range sp.Maps {
		if ms.Layer < 0 || ms.Layer >= L {
			return m, nil, errs.Input("method %q: maps[%d]: layer %d out of range [0, %d) (the model has n_layer = %d)", sp.Name, i, ms.Layer, L, L)
		}
		if _, dup := m.Affine[ms.Layer]; dup {
			return m, nil, errs.Input("method %q: maps[%d]: layer %d has two maps", sp.Name, i, ms.Layer)
		}
		W, err := s.tensorArg(ms.W, "maps W", torch.Float32)
		if err != nil {
			return m, nil, errs.Input("method %q: maps[%d] (layer %d): %v", sp.Name, i, ms.Layer, err)
		}
		b, err := s.tensorArg(ms.B, "maps b", torch.Float32)
		if err != nil {
			W.Close()
			return m, nil, errs.Input("method %q: maps[%d] (layer %d): %v", sp.Name, i, ms.Layer, err)
		}
		m.Affine[ms.Layer] = patchscope.Affine{W: W, B: b} // closed with m on a refusal below
		if ws := W.Shape(); len(ws) != 2 || ws[0] != C || ws[1] != C {
			return m, nil, errs.Input("method %q: maps[%d] (layer %d): W has shape %s, want [%d, %d] (the model's n_embd = %d)", sp.Name, i, ms.Layer, torch.ShapeString(ws), C, C, C)
		}
		if bs := b.Shape(); len(bs) != 1 || bs[0] != C {
			return m, nil, errs.Input("method %q: maps[%d] (layer %d): b has shape %s, want [%d] (the model's n_embd = %d)", sp.Name, i, ms.Layer, torch.ShapeString(bs), C, C)
		}
		layers = append(layers, ms.Layer)
	}
	ok = true
	return m, map[string]any{"name": sp.Name, "kind": patchscope.KindAffine, "map_layers": layers}, nil
}

// closeAffine frees an affine method's maps.
func closeAffine(m patchscope.Method) {
	for _, a := range m.Affine {
		a.W.Close()
		a.B.Close()
	}
}

// closeMethods frees the tensors the resolved methods hold (the affine maps).
func closeMethods(ms []patchscope.Method) {
	for _, m := range ms {
		closeAffine(m)
	}
}
