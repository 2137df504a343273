package patching

import (
	"fmt"

	"github.com/simplescope/simplescope/core/errs"
	"github.com/simplescope/simplescope/core/gptj"
)

// Site is where a patch writes: the output of block Layer (TransformerLens
// blocks.{l}.hook_resid_post) or its input (blocks.{l}.hook_resid_pre; layer 0: the embedding).
type Site int

const (
	ResidPost Site = iota
	ResidPre
)

// ParseSite reads "resid_post" (also "") or "resid_pre".
func ParseSite(name string) (Site, error) {
	switch name {
	case "", "resid_post":
		return ResidPost, nil
	case "resid_pre":
		return ResidPre, nil
	}
	return 0, fmt.Errorf("site %q: want \"resid_post\" or \"resid_pre\"", name)
}

// Row is one patched target: its tokens, the layer written and the positions written (each
// in [0, len(Target)), sorted or not; the same vector is written at every listed position).
type Row struct {
	Target    []int
	Layer     int
	Positions []int
}

// ResolvePosition turns a position that may count from the end (negative) into an index of a
// sequence of n tokens, or reports it outside.
func ResolvePosition(p, n int) (int, bool) {
	if p < 0 {
		p += n
	}
	return p, p >= 0 && p < n
}

// CheckRows validates rows against the model before any work: non-empty targets within the
// context and vocabulary, layers in [0, n_layer), positions inside their target. Positions must
// already be resolved (ResolvePosition). Errors name the argument (what) and the row.
func CheckRows(m *gptj.Model, rows []Row, what string) error {
	cfg := m.Cfg
	for i, r := range rows {
		if len(r.Target) == 0 {
			return errs.Input("%s row %d: no tokens", what, i)
		}
		if len(r.Target) > cfg.NPositions {
			return errs.Input("%s row %d: %d tokens, more than the model's context of %d", what, i, len(r.Target), cfg.NPositions)
		}
		for j, id := range r.Target {
			if id < 0 || id >= cfg.VocabSize {
				return errs.Input("%s row %d: token %d: id %d out of range [0, %d)", what, i, j, id, cfg.VocabSize)
			}
		}
		if r.Layer < 0 || r.Layer >= cfg.NLayer {
			return errs.Input("%s row %d: layer %d out of range [0, %d)", what, i, r.Layer, cfg.NLayer)
		}
		if len(r.Positions) == 0 {
			return errs.Input("%s row %d: no position to patch", what, i)
		}
		for _, p := range r.Positions {
			if p < 0 || p >= len(r.Target) {
				return errs.Input("%s row %d: position %d outside its %d tokens (allowed: [%d, %d))", what, i, p, len(r.Target), -len(r.Target), len(r.Target))
			}
		}
	}
	return nil
}

// startBlock is the first block that runs after a vector written at layer l on site.
func startBlock(site Site, l int) int {
	if site == ResidPre {
		return l
	}
	return l + 1
}
