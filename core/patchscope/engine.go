package patchscope

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// Evaluate runs every method at every requested layer for every prompt.
func Evaluate(ctx context.Context, m *gptj.Model, req Request) (*Result, error) {
	t0 := time.Now()
	L := m.Cfg.NLayer
	if req.Layers == nil {
		for l := 0; l < L; l++ {
			req.Layers = append(req.Layers, l)
		}
	}
	if err := req.validate(L, m.Cfg.VocabSize, m.Cfg.NPositions); err != nil {
		return nil, err
	}
	e := &engine{m: m, req: &req, ctx: ctx, L: L}
	e.defaults()
	res := e.allocate()
	prefixes := make([]*gptj.Prefix, len(req.Methods))
	defer func() {
		for _, p := range prefixes {
			p.Close()
		}
	}()
	for mi, meth := range req.Methods {
		if meth.Kind != KindPatch {
			continue
		}
		p, err := m.ComputePrefix(ctx, meth.Target[:meth.Placeholder])
		if err != nil {
			return nil, fmt.Errorf("method %q: target prefix: %w", meth.Name, err)
		}
		prefixes[mi] = p
	}
	e.prefixes = prefixes
	e.res = res
	for start := 0; start < len(req.Prompts); start += e.chunk {
		if err := cancelled(ctx); err != nil {
			return nil, err
		}
		end := min(start+e.chunk, len(req.Prompts))
		if err := e.evalChunk(start, end); err != nil {
			return nil, err
		}
	}
	res.Stats.Seconds = time.Since(t0).Seconds()
	return res, nil
}

type engine struct {
	m        *gptj.Model
	req      *Request
	ctx      context.Context
	L        int
	chunk    int
	batchTok int
	rows     int
	prefixes []*gptj.Prefix
	res      *Result
	done     int64
	total    int64
}

func (e *engine) defaults() {
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
			if free, _, err := torch.CUDAMemInfo(e.m.Device.Index); err == nil {
				// ~ (qkv, attention out, MLP 4C, residual copies) per token in the model dtype
				per := int64(24*e.m.Cfg.NEmbd) * int64(e.m.DType.Size())
				e.batchTok = int(max(1024, min(free/4/per, 262144)))
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

// srcPoint is a source (prompt, position) whose prediction the metrics need.
type srcPoint struct{ d, p int }

// rowKey names a residual row: layer l of prompt d at position p.
type rowKey struct{ l, d, p int }

// item is one patched decoding: method mi, source layer index li of prompt d, target index ti.
type item struct {
	mi, d, li, ti int
	start         int // first block to run (target layer + 1)
	row           int // row of the source residual in the chunk's row table
	src           int // index of the source point
}

func (e *engine) evalChunk(lo, hi int) error {
	req, L := e.req, e.L
	nl := len(req.Layers)
	// 1. positions
	pos := make([][][]int, hi-lo) // [d][li][mi]
	for d := lo; d < hi; d++ {
		pos[d-lo] = make([][]int, nl)
		for li, l := range req.Layers {
			pos[d-lo][li] = make([]int, len(req.Methods))
			for mi := range req.Methods {
				p := req.positionOf(d, li, mi, l)
				pos[d-lo][li][mi] = p
				e.res.Methods[mi].Position[d*nl+li] = int64(p)
			}
		}
	}
	// 2. the rows each source forward must keep
	srcIndex := map[srcPoint]int{}
	var srcs []srcPoint
	for d := lo; d < hi; d++ {
		for li := range req.Layers {
			for mi := range req.Methods {
				sp := srcPoint{d, pos[d-lo][li][mi]}
				if _, ok := srcIndex[sp]; !ok {
					srcIndex[sp] = len(srcs)
					srcs = append(srcs, sp)
				}
			}
		}
	}
	// 3. source forwards, bucketed by length
	docs := make([]int, 0, hi-lo)
	for d := lo; d < hi; d++ {
		docs = append(docs, d)
	}
	sort.SliceStable(docs, func(i, j int) bool { return len(req.Prompts[docs[i]]) > len(req.Prompts[docs[j]]) })
	rowIndex := map[rowKey]int{}
	var pieces []*torch.Tensor
	defer func() {
		for _, t := range pieces {
			t.Close()
		}
	}()
	nRows := 0
	y := make([]int64, len(srcs))
	lse := make([]float32, len(srcs))
	tSrc := time.Now()
	for i := 0; i < len(docs); {
		j := e.bucketEnd(docs, i)
		batch := docs[i:j]
		err := e.sourceBatch(batch, pos, lo, srcIndex, rowIndex, &pieces, &nRows, y, lse)
		if torch.IsOOM(err) && len(batch) > 1 {
			e.batchTok = max(1, e.batchTok/2)
			e.res.Stats.Retries++
			continue
		}
		if err != nil {
			return err
		}
		if err := cancelled(e.ctx); err != nil {
			return err
		}
		i = j
	}
	e.res.Stats.SourceSeconds += time.Since(tSrc).Seconds()
	tPatch := time.Now()
	defer func() { e.res.Stats.PatchSeconds += time.Since(tPatch).Seconds() }()
	s := torch.NewScope()
	defer s.Close()
	table := pieces[0]
	if len(pieces) > 1 {
		table = s.Cat(pieces, 0) // (R, C)
		if s.Err() == nil {
			for _, t := range pieces { // the table holds its own copy
				t.Close()
			}
			pieces = nil
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	// 4. items grouped by (prefix, start block)
	type groupKey struct{ mi, start int }
	groups := map[groupKey][]item{}
	var keys []groupKey
	for d := lo; d < hi; d++ {
		for li, l := range req.Layers {
			for mi, meth := range req.Methods {
				p := pos[d-lo][li][mi]
				si := srcIndex[srcPoint{d, p}]
				e.res.Methods[mi].SourceTop1[d*nl+li] = y[si]
				for ti, t := range meth.targetLayers(l, L) {
					it := item{mi: mi, d: d, li: li, ti: ti, start: t + 1, row: rowIndex[rowKey{l, d, p}], src: si}
					k := groupKey{mi, it.start}
					if it.start == L {
						k.mi = -1 // no block runs: the prefix does not matter
					}
					if _, ok := groups[k]; !ok {
						keys = append(keys, k)
					}
					groups[k] = append(groups[k], it)
				}
			}
		}
	}
	lastRow := make([]int, len(srcs))
	for i, sp := range srcs {
		lastRow[i] = rowIndex[rowKey{L - 1, sp.d, sp.p}]
	}
	for _, k := range keys {
		its := groups[k]
		var prefix *gptj.Prefix
		if k.mi >= 0 {
			prefix = e.prefixes[k.mi]
		} else {
			prefix = &gptj.Prefix{}
		}
		for i := 0; i < len(its); {
			j := min(len(its), i+e.rows)
			err := e.patchBatch(table, its[i:j], k.start, prefix, y, lse, lastRow)
			if torch.IsOOM(err) && j-i > 1 {
				e.rows = max(1, e.rows/2)
				e.res.Stats.Retries++
				continue
			}
			if err != nil {
				return err
			}
			e.done += int64(j - i)
			if e.req.Progress != nil {
				e.req.Progress(e.done, e.total)
			}
			if err := cancelled(e.ctx); err != nil {
				return err
			}
			i = j
		}
	}
	return nil
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

// sourceBatch runs the source forward for prompts batch and records residual rows, the source
// top-1 and the log-partition of every source point of those prompts.
func (e *engine) sourceBatch(batch []int, pos [][][]int, lo int, srcIndex map[srcPoint]int,
	rowIndex map[rowKey]int, pieces *[]*torch.Tensor, nRows *int, y []int64, lse []float32) error {
	req, L := e.req, e.L
	seqs := make([][]int, len(batch))
	local := map[int]int{}
	for i, d := range batch {
		seqs[i] = req.Prompts[d]
		local[d] = i
	}
	type rk = rowKey
	want := map[int][]gptj.Point{}
	var keysByLayer = map[int][]rk{}
	added := map[rk]bool{}
	add := func(l, d, p int) {
		k := rk{l, d, p}
		if added[k] {
			return
		}
		added[k] = true
		keysByLayer[l] = append(keysByLayer[l], k)
		want[l] = append(want[l], gptj.Point{Seq: local[d], Pos: p})
	}
	var logitPts []gptj.Point
	var logitSrc []int
	for _, d := range batch {
		seen := map[int]bool{}
		for li, l := range req.Layers {
			for mi := range req.Methods {
				p := pos[d-lo][li][mi]
				add(l, d, p)
				add(L-1, d, p) // final residual for paper_surprisal
				if !seen[p] {
					seen[p] = true
					logitPts = append(logitPts, gptj.Point{Seq: local[d], Pos: p})
					logitSrc = append(logitSrc, srcIndex[srcPoint{d, p}])
				}
			}
		}
	}
	out, err := e.m.Forward(e.ctx, seqs, gptj.Request{Resid: want, LogitPoints: logitPts})
	if err != nil {
		return err
	}
	defer out.Close()
	s := torch.NewScope()
	defer s.Close()
	top := s.Argmax(out.Logits, 1, true)                   // (P, 1)
	logitY := s.Gather(out.Logits, 1, top)                 // (P, 1)
	logpY := s.Gather(s.LogSoftmax(out.Logits, 1), 1, top) // (P, 1)
	lseT := s.Sub(logitY, logpY)                           // (P, 1): log Σ exp(logits)
	if err := s.Err(); err != nil {
		return err
	}
	ys, err := top.Int64s()
	if err != nil {
		return err
	}
	ls, err := lseT.Float32s()
	if err != nil {
		return err
	}
	for i, si := range logitSrc {
		y[si] = ys[i]
		lse[si] = ls[i]
	}
	// keep the rows; order the layers for determinism
	layers := make([]int, 0, len(want))
	for l := range want {
		layers = append(layers, l)
	}
	sort.Ints(layers)
	for _, l := range layers {
		for i, k := range keysByLayer[l] {
			rowIndex[k] = *nRows + i
		}
		*nRows += len(keysByLayer[l])
		t := out.Resid[l]
		delete(out.Resid, l) // now owned by pieces
		*pieces = append(*pieces, t)
	}
	e.res.Stats.SourceBatches++
	e.res.Stats.SourceTokens += int64(len(batch) * out.T)
	return nil
}

// patchBatch runs one batch of items that share a start block and a prefix.
func (e *engine) patchBatch(table *torch.Tensor, its []item, start int, prefix *gptj.Prefix, y []int64, lse []float32, lastRow []int) error {
	s := torch.NewScope()
	defer s.Close()
	dev := e.m.Device
	n := int64(len(its))
	rowIdx := make([]int64, n)
	lastIdx := make([]int64, n)
	ys := make([]int64, n)
	for i, it := range its {
		rowIdx[i] = int64(it.row)
		lastIdx[i] = int64(lastRow[it.src])
		ys[i] = y[it.src]
	}
	h := s.IndexSelect(table, 0, torch.ScopeFromSlice(s, rowIdx, []int64{n}, torch.Int64, dev)) // (N, C)
	if err := s.Err(); err != nil {
		return err
	}
	logits, err := e.m.Continue(e.ctx, h, start, prefix) // (N, V) float32
	if err != nil {
		return err
	}
	s.Own(logits, nil)
	yT := torch.ScopeFromSlice(s, ys, []int64{n, 1}, torch.Int64, dev)
	top := s.Argmax(logits, 1, false)                               // (N)
	logpY := s.Reshape(s.Gather(s.LogSoftmax(logits, 1), 1, yT), n) // (N)
	last := s.IndexSelect(table, 0, torch.ScopeFromSlice(s, lastIdx, []int64{n}, torch.Int64, dev))
	srcLogit := e.m.LogitsAt(s, last, top) // (N): source logit of the patched top-1
	if err := s.Err(); err != nil {
		return err
	}
	tops, err := top.Int64s()
	if err != nil {
		return err
	}
	lp, err := logpY.Float32s()
	if err != nil {
		return err
	}
	sl, err := srcLogit.Float32s()
	if err != nil {
		return err
	}
	nl := len(e.req.Layers)
	for i, it := range its {
		mr := &e.res.Methods[it.mi]
		nt := 1
		if mr.TargetLayers != nil {
			nt = len(mr.TargetLayers)
		}
		k := (it.d*nl+it.li)*nt + it.ti
		mr.PatchedTop1[k] = tops[i]
		if tops[i] == y[it.src] {
			mr.Prec1[k] = 1
		} else {
			mr.Prec1[k] = 0
		}
		mr.Surprisal[k] = -lp[i]
		mr.PaperSurprisal[k] = lse[it.src] - sl[i]
	}
	e.res.Stats.PatchBatches++
	e.res.Stats.PatchedRows += n
	return nil
}
