package patchscope

import (
	"fmt"
	"strings"
)

// Method kinds.
const (
	KindLogitLens = "logitlens"
	KindPatch     = "patch"
	KindAffine    = "affine" // the paper's affine-mapping baseline (affine.go)
)

// Target-layer modes of a patch method.
const (
	TargetSame  = "same"  // patch into the target at the source layer
	TargetLast  = "last"  // patch into the output of the last block
	TargetFixed = "fixed" // patch into a fixed block
	TargetAll   = "all"   // every target layer: a source × target grid
)

// Published target prompts.
const (
	PatchscopePrompt  = "cat -> cat\n1135 -> 1135\nhello -> hello\n?"
	SimplescopePrompt = "?"
)

// Method is one way of decoding a hidden state.
type Method struct {
	Name string
	Kind string
	// Target prompt tokens (BOS included when wanted) and the index of the placeholder whose
	// residual is overwritten and whose prediction is read. Patch methods only.
	Target      []int
	Placeholder int
	TargetMode  string // TargetSame, TargetLast, TargetFixed or TargetAll
	TargetLayer int    // for TargetFixed
	// Affine methods only: per source layer, the map whose image of the hidden state is decoded
	// by the final layer norm and the unembedding (affine.go).
	Affine map[int]Affine
}

// IsGrid reports whether the method has a target-layer axis.
func (m Method) IsGrid() bool { return m.Kind == KindPatch && m.TargetMode == TargetAll }

// Validate checks the method against a model with nLayer blocks.
func (m Method) Validate(nLayer int) error {
	if strings.TrimSpace(m.Name) == "" {
		return fmt.Errorf("method has no name")
	}
	switch m.Kind {
	case KindLogitLens:
		return nil
	case KindAffine:
		return m.validateAffine(nLayer)
	case KindPatch:
	default:
		return fmt.Errorf("method %q: unknown kind %q (want %q, %q or %q)", m.Name, m.Kind, KindLogitLens, KindPatch, KindAffine)
	}
	if len(m.Target) == 0 {
		return fmt.Errorf("method %q: empty target prompt", m.Name)
	}
	if m.Placeholder < 0 || m.Placeholder >= len(m.Target) {
		return fmt.Errorf("method %q: placeholder index %d outside the target prompt of %d tokens", m.Name, m.Placeholder, len(m.Target))
	}
	switch m.TargetMode {
	case TargetSame, TargetLast, TargetAll:
	case TargetFixed:
		if m.TargetLayer < 0 || m.TargetLayer >= nLayer {
			return fmt.Errorf("method %q: target layer %d out of range [0, %d)", m.Name, m.TargetLayer, nLayer)
		}
	default:
		return fmt.Errorf("method %q: unknown target layer mode %q (want same, last, fixed or all)", m.Name, m.TargetMode)
	}
	return nil
}

// targetLayers lists the blocks whose output is overwritten for source layer l.
func (m Method) targetLayers(l, nLayer int) []int {
	switch {
	case m.Kind == KindLogitLens, m.Kind == KindAffine:
		return []int{nLayer - 1}
	case m.TargetMode == TargetSame:
		return []int{l}
	case m.TargetMode == TargetLast:
		return []int{nLayer - 1}
	case m.TargetMode == TargetFixed:
		return []int{m.TargetLayer}
	}
	all := make([]int, nLayer)
	for i := range all {
		all[i] = i
	}
	return all
}
