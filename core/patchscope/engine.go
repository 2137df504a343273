package patchscope

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/simplescope/simplescope/core/batch"
	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// Evaluate runs every method at every requested layer for every prompt. A prompt of no tokens,
// and in PosPaper mode a prompt too short for the position range, is skipped, not an error: its
// rows are NaN, Result.SkippedEmpty / SkippedShort list it, and it takes no position draw, so
// every other prompt's values are those of the same request without it.
func Evaluate(ctx context.Context, m *gptj.Model, req Request) (*Result, error) {
	return EvaluateOn(ctx, []*gptj.Model{m}, req)
}

// EvaluateOn is Evaluate with the work split over replicas of one model (one per device, the
// same weights and dtype): chunk i of the prompts runs on replica i mod len(ms), each replica with
// its target prefixes of its own, so every chunk is computed as one device computes it and the
// results equal Evaluate's on one replica (bit for bit on devices of one kind with the same batch
// sizes: Deterministic, or given sizes). Stats add up the replicas' work; Seconds is wall time.
func EvaluateOn(ctx context.Context, ms []*gptj.Model, req Request) (*Result, error) {
	t0 := time.Now()
	if len(ms) == 0 {
		return nil, fmt.Errorf("evaluate: no model")
	}
	L := ms[0].Cfg.NLayer
	if req.Layers == nil {
		for l := 0; l < L; l++ {
			req.Layers = append(req.Layers, l)
		}
	}
	if err := req.validate(L, ms[0].Cfg.VocabSize, ms[0].Cfg.NPositions); err != nil {
		return nil, err
	}
	kept, empty, short := req.partition()
	sub := req.subset(kept)
	sub.planPositions()
	var res *Result
	var err error
	if len(ms) > 1 {
		res, err = evaluateReplicas(ctx, ms, sub)
	} else {
		res, err = evaluate(ctx, ms[0], sub)
	}
	if err != nil {
		return nil, err
	}
	res = res.expand(len(req.Prompts), kept)
	res.SkippedEmpty, res.SkippedShort = empty, short
	res.Stats.Seconds = time.Since(t0).Seconds()
	return res, nil
}

// evaluate runs a validated request whose prompts all have tokens and whose positions are planned.
func evaluate(ctx context.Context, m *gptj.Model, req Request) (*Result, error) {
	e := &engine{m: m, req: &req, L: m.Cfg.NLayer}
	e.defaults(ctx)
	e.res = e.allocate()
	st := &e.res.Stats
	st.BatchTokens, st.PatchRows, st.ChunkPrompts = e.batchTok, e.rows, e.chunk
	if len(req.Prompts) == 0 {
		return e.res, nil
	}
	if err := e.run(ctx, 0, 1); err != nil {
		return nil, err
	}
	st.PatchRowsFinal, st.SourceBatchCap = e.rows, e.srcLimit
	return e.res, nil
}

// run computes the target prefixes and evaluates chunks k, k+n, k+2n, … of the prompts.
func (e *engine) run(ctx context.Context, k, n int) error {
	defer e.closePrefixes()
	if err := e.prefixPass(ctx); err != nil {
		return err
	}
	for lo := k * e.chunk; lo < len(e.req.Prompts); lo += n * e.chunk {
		if err := cancelled(ctx); err != nil {
			return err
		}
		if err := e.evalChunk(ctx, lo, min(lo+e.chunk, len(e.req.Prompts))); err != nil {
			return err
		}
	}
	return nil
}

// engine is one evaluation: the request, the batch sizes (halved on out-of-memory), each patch
// method's target prefix, and the result being filled in.
type engine struct {
	m        *gptj.Model
	req      *Request
	L        int
	chunk    int            // prompts per chunk
	batchTok int            // padded tokens per source batch (see tokenBudget)
	srcLimit int            // prompts per source batch at most, once one ran out of memory (0: no cap)
	rows     int            // rows per continuation batch
	prefixes []*gptj.Prefix // per method: its target prefix's K/V (nil for logit lens)
	res      *Result
	done     int64 // items decoded, for Progress
	total    int64 // items to decode
}

// defaults fills in the batch sizes the request leaves at 0: fixed per device type, except the
// source batches' token budget, which follows the device's memory budget (batch.DeviceBudget)
// unless the request is Deterministic.
func (e *engine) defaults(ctx context.Context) {
	e.chunk, e.batchTok, e.rows = e.req.ChunkPrompts, e.req.BatchTokens, e.req.PatchRows
	onGPU := e.m.Device.Type == torch.DevCUDA
	if e.chunk <= 0 {
		e.chunk = 64 // on the CPU: progress every few seconds, patched groups still hundreds of rows
		if onGPU {
			e.chunk = 1024
		}
	}
	if e.batchTok <= 0 {
		e.batchTok = 2048 // on the CPU larger batches gain nothing and delay cancellation
		if onGPU {
			e.batchTok = 32768
		}
		if !e.req.Deterministic {
			if budget, ok := batch.DeviceBudget(ctx, e.m.Device); ok {
				e.batchTok = batch.Tokens(budget, e.m.Cfg.NEmbd, e.m.DType.Size())
			}
		}
	}
	if e.rows <= 0 {
		e.rows = 512
		if onGPU {
			e.rows = 8192
		}
	}
}

func (e *engine) allocate() *Result {
	n, nl := len(e.req.Prompts), len(e.req.Layers)
	res := &Result{NPrompts: n, Layers: append([]int(nil), e.req.Layers...)}
	for _, meth := range e.req.Methods {
		nt := 1
		mr := MethodResult{Name: meth.Name}
		if meth.IsGrid() {
			nt = e.L
			for t := 0; t < e.L; t++ {
				mr.TargetLayers = append(mr.TargetLayers, t)
			}
		}
		size := n * nl * nt
		mr.Prec1, mr.Surprisal, mr.PaperSurprisal = nanSlice(size), nanSlice(size), nanSlice(size)
		mr.PatchedTop1 = make([]int64, size)
		mr.Position = make([]int64, n*nl)
		mr.SourceTop1 = make([]int64, n*nl)
		res.Methods = append(res.Methods, mr)
		e.total += int64(size)
	}
	return res
}

func nanSlice(n int) []float32 {
	s := make([]float32, n)
	nan := float32(math.NaN())
	for i := range s {
		s[i] = nan
	}
	return s
}

// prefixPass runs each patch method's target prefix (the tokens before its placeholder) once
// for the whole evaluation and keeps its K/V, which every chunk's continuations attend to.
func (e *engine) prefixPass(ctx context.Context) error {
	e.prefixes = make([]*gptj.Prefix, len(e.req.Methods))
	for mi, meth := range e.req.Methods {
		if meth.Kind != KindPatch {
			continue
		}
		p, err := e.m.ComputePrefix(ctx, meth.Target[:meth.Placeholder])
		if err != nil {
			return fmt.Errorf("method %q: target prefix: %w", meth.Name, err)
		}
		e.prefixes[mi] = p
	}
	return nil
}

func (e *engine) closePrefixes() {
	for _, p := range e.prefixes {
		p.Close()
	}
}

// prefixOf returns method mi's target prefix, or an empty one for mi = -1 (no block runs).
func (e *engine) prefixOf(mi int) *gptj.Prefix {
	if mi < 0 {
		return &gptj.Prefix{}
	}
	return e.prefixes[mi]
}

// retryHalving runs n items in batches under batch.RetryHalving (the one out-of-memory policy:
// a batch that runs out of memory is run again as its first half, and *limit caps the batches
// after it) and counts the retries in the result's stats.
func (e *engine) retryHalving(ctx context.Context, n int, limit *int, next func(i int) int, run func(i, j int) error) error {
	retries, err := batch.RetryHalving(ctx, n, limit, next, run)
	e.res.Stats.Retries += retries
	return err
}

// bucketEnd returns the end of the source batch starting at docs[i] (docs sorted by length,
// longest first): prompts are added while the padded batch stays within the token budget and
// padding stays under 10% of it, so batches hold prompts of similar length.
func (e *engine) bucketEnd(docs []int, i int) int {
	T := len(e.req.Prompts[docs[i]])
	budget := e.tokenBudget(T)
	sum := T
	j := i + 1
	for ; j < len(docs); j++ {
		n := len(e.req.Prompts[docs[j]])
		count := j - i + 1
		if count*T > budget || float64(count*T-(sum+n)) > 0.1*float64(count*T) {
			break
		}
		sum += n
	}
	return j
}

// tokenBudget is batchTok adjusted for the attention scores of sequences of length T: batchTok
// counts tokens of ~24·C activation values each; attention adds H·T scores per token (float32
// scores and softmax, plus a copy in the model dtype).
func (e *engine) tokenBudget(T int) int {
	cfg := e.m.Cfg
	per := float64(24 * cfg.NEmbd * e.m.DType.Size())
	attn := float64(cfg.NHead * T * (8 + e.m.DType.Size()))
	return max(1, int(float64(e.batchTok)*per/(per+attn)))
}
