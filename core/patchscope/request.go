package patchscope

import (
	"context"
	"fmt"
	"strings"

	"github.com/simplescope/simplescope/core/errs"
)

// Request is one evaluation.
type Request struct {
	Prompts   [][]int // token ids as the model sees them (BOS included when wanted)
	Layers    []int   // source layers; nil = every layer
	Methods   []Method
	Positions Positions
	Seed      int64 // seeds the random, notebook and paper positions (positions.go)

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

	// Set by planPositions (positions.go) on the request the engine runs.
	drawn   []int32    // PosNotebook: [d][li][mi] flattened; PosPaper: [d]
	digests [][32]byte // PosRandom: SHA-256 of each prompt's token ids
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
		// a prompt of no tokens is not an error: Evaluate skips it (positions.go)
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
	case PosRandom, PosNotebook, PosLast:
	case PosPaper:
		if r.Positions.Start < 0 {
			return fmt.Errorf("positions: paper mode start %d is negative", r.Positions.Start)
		}
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
					if len(r.Prompts[d]) > 0 && (p < 0 || p >= len(r.Prompts[d])) {
						return fmt.Errorf("position %d for prompt %d layer %d out of range [0, %d)", p, d, r.Layers[li], len(r.Prompts[d]))
					}
				}
			}
		} else {
			if len(r.Positions.PerPrompt) != len(r.Prompts) {
				return fmt.Errorf("positions: %d given for %d prompts", len(r.Positions.PerPrompt), len(r.Prompts))
			}
			for d, p := range r.Positions.PerPrompt {
				if len(r.Prompts[d]) > 0 && (p < 0 || p >= len(r.Prompts[d])) {
					return fmt.Errorf("position %d for prompt %d out of range [0, %d)", p, d, len(r.Prompts[d]))
				}
			}
		}
	default:
		return fmt.Errorf("unknown positions mode %q (known: %s, given)", r.Positions.Mode, strings.Join(PositionModes, ", "))
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

	// Prompts skipped, by index (ascending): of no tokens, and (PosPaper) too short for the
	// position range. Their rows are NaN, their ids and positions -1.
	SkippedEmpty, SkippedShort []int
}

// Stats describes how the work was done.
type Stats struct {
	SourceBatches, PatchBatches int
	SourceTokens                int64 // padded tokens through the source forward
	PatchedRows                 int64
	Retries                     int // halvings after out-of-memory
	Seconds                     float64
	SourceSeconds, PatchSeconds float64 // time in source forwards / patched continuations

	// Batch sizes: as chosen at the start (the request's, or the engine's defaults), and the
	// caps left after out-of-memory halvings (SourceBatchCap 0: source batches never capped).
	BatchTokens, PatchRows, ChunkPrompts int
	PatchRowsFinal, SourceBatchCap       int
}

// errCancelled wraps the context's error.
func cancelled(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("evaluation cancelled: %w", err)
	}
	return nil
}
