package patchscope

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/simplescope/simplescope/core/errs"
)

// Position modes.
const (
	PosRandom = "random" // randint(0, len-1) per (prompt, layer, method), seeded
	PosLast   = "last"
	PosGiven  = "given" // PerPrompt or PerPromptLayer
)

// Positions chooses the source position of every (prompt, layer, method).
type Positions struct {
	Mode           string
	PerPrompt      []int   // [n_prompts]
	PerPromptLayer [][]int // [n_prompts][n_layers] (layers in Request.Layers order)
}

// Request is one evaluation.
type Request struct {
	Prompts   [][]int // token ids as the model sees them (BOS included when wanted)
	Layers    []int   // source layers; nil = every layer
	Methods   []Method
	Positions Positions
	Seed      uint64

	// Tuning; zero picks a default.
	BatchTokens  int // padded tokens per source forward batch
	PatchRows    int // rows per patched continuation batch
	ChunkPrompts int // prompts held at once
	// Deterministic fixes the default batch sizes (those of the device type) instead of
	// deriving them from the device's free memory, so that batch composition — and with it the
	// results, bit for bit, on one device and dtype — does not depend on what else the device
	// holds. A batch that runs out of memory is still halved (Stats.Retries tells).
	Deterministic bool

	// Progress, if set, is called with (items done, items total) after each batch.
	Progress func(done, total int64)
}

// positionOf returns the source position for prompt d, layer index li, method index mi.
func (r *Request) positionOf(d, li, mi int, layer int) int {
	n := len(r.Prompts[d])
	switch r.Positions.Mode {
	case PosLast:
		return n - 1
	case PosGiven:
		if r.Positions.PerPromptLayer != nil {
			return r.Positions.PerPromptLayer[d][li]
		}
		return r.Positions.PerPrompt[d]
	}
	// Independent per (prompt, layer, method): a generator keyed by all three and the seed, so
	// the draw does not depend on batching, chunking or the order of evaluation.
	g := rand.New(rand.NewPCG(r.Seed, uint64(d)<<32^uint64(layer)<<16^uint64(mi)))
	return g.IntN(n)
}

// validate returns check's refusal as an input error (the caller's mistake), as opposed to a
// failure while running.
func (r *Request) validate(nLayer, vocab, context int) error {
	return errs.AsInput(r.check(nLayer, vocab, context))
}

func (r *Request) check(nLayer, vocab, context int) error {
	if len(r.Prompts) == 0 {
		return fmt.Errorf("no prompts")
	}
	for i, p := range r.Prompts {
		if len(p) == 0 {
			return fmt.Errorf("prompt %d is empty (no tokens)", i)
		}
		if len(p) > context {
			return fmt.Errorf("prompt %d has %d tokens, more than the model's context of %d", i, len(p), context)
		}
		for j, id := range p {
			if id < 0 || id >= vocab {
				return fmt.Errorf("prompt %d token %d: id %d out of range [0, %d)", i, j, id, vocab)
			}
		}
	}
	if len(r.Layers) == 0 {
		return fmt.Errorf("no layers")
	}
	seen := map[int]bool{}
	for _, l := range r.Layers {
		if l < 0 || l >= nLayer {
			return fmt.Errorf("layer %d out of range [0, %d)", l, nLayer)
		}
		if seen[l] {
			return fmt.Errorf("layer %d listed twice", l)
		}
		seen[l] = true
	}
	if len(r.Methods) == 0 {
		return fmt.Errorf("no methods")
	}
	names := map[string]bool{}
	for _, m := range r.Methods {
		if err := m.Validate(nLayer); err != nil {
			return err
		}
		if names[m.Name] {
			return fmt.Errorf("method %q listed twice", m.Name)
		}
		names[m.Name] = true
		if len(m.Target) > context {
			return fmt.Errorf("method %q: target prompt of %d tokens exceeds the context of %d", m.Name, len(m.Target), context)
		}
		for j, id := range m.Target {
			if id < 0 || id >= vocab {
				return fmt.Errorf("method %q: target token %d: id %d out of range [0, %d)", m.Name, j, id, vocab)
			}
		}
	}
	switch r.Positions.Mode {
	case PosRandom, PosLast:
	case PosGiven:
		if r.Positions.PerPromptLayer != nil {
			if len(r.Positions.PerPromptLayer) != len(r.Prompts) {
				return fmt.Errorf("positions: %d rows given for %d prompts", len(r.Positions.PerPromptLayer), len(r.Prompts))
			}
			for d, row := range r.Positions.PerPromptLayer {
				if len(row) != len(r.Layers) {
					return fmt.Errorf("positions: prompt %d has %d positions for %d layers", d, len(row), len(r.Layers))
				}
				for li, p := range row {
					if p < 0 || p >= len(r.Prompts[d]) {
						return fmt.Errorf("position %d for prompt %d layer %d out of range [0, %d)", p, d, r.Layers[li], len(r.Prompts[d]))
					}
				}
			}
		} else {
			if len(r.Positions.PerPrompt) != len(r.Prompts) {
				return fmt.Errorf("positions: %d given for %d prompts", len(r.Positions.PerPrompt), len(r.Prompts))
			}
			for d, p := range r.Positions.PerPrompt {
				if p < 0 || p >= len(r.Prompts[d]) {
					return fmt.Errorf("position %d for prompt %d out of range [0, %d)", p, d, len(r.Prompts[d]))
				}
			}
		}
	default:
		return fmt.Errorf("unknown positions mode %q (want random, last or given)", r.Positions.Mode)
	}
	return nil
}

// MethodResult holds one method's per-example values, row-major:
// [n_prompts, n_layers] or, for a grid, [n_prompts, n_layers, n_target_layers].
type MethodResult struct {
	Name           string
	TargetLayers   []int // grid methods only
	Prec1          []float32
	Surprisal      []float32
	PaperSurprisal []float32
	PatchedTop1    []int64
	Position       []int64 // [n_prompts, n_layers]
	SourceTop1     []int64 // [n_prompts, n_layers]
}

// Result is an evaluation's output.
type Result struct {
	NPrompts int
	Layers   []int
	Methods  []MethodResult
	Stats    Stats
}

// Stats describes how the work was done.
type Stats struct {
	SourceBatches, PatchBatches int
	SourceTokens                int64 // padded tokens through the source forward
	PatchedRows                 int64
	Retries                     int // halvings after out-of-memory
	Seconds                     float64
	SourceSeconds, PatchSeconds float64 // time in source forwards / patched continuations
}

// errCancelled wraps the context's error.
func cancelled(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("evaluation cancelled: %w", err)
	}
	return nil
}
