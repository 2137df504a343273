package patchscope

import (
	"context"
	"sort"
	"time"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// srcPoint is a source (prompt, position) whose prediction the metrics need.
type srcPoint struct{ d, p int }

// rowKey names a residual row: layer l of prompt d at position p.
type rowKey struct{ l, d, p int }

// item is one patched decoding: method mi, source layer index li of prompt d, target index ti.
type item struct {
	mi, d, li, ti int
	start         int // first block to run (target layer + 1)
	row           int // row of the source residual in the chunk's table
	src           int // index of the source point
}

// group is items that continue together: one target prefix, one start block.
type group struct {
	start  int
	prefix *gptj.Prefix
	affine *Affine // affine methods: the source layer's map, applied to the rows first
	items  []item
}

// chunk is the work on prompts [lo, hi): their source positions; the source pass, which keeps
// the residual rows the methods read and the source predictions the metrics compare with; and
// the continuation pass, which decodes every patched item from those rows. (The target
// prefixes do not depend on the prompts: the engine's prefixPass runs them once.)
type chunk struct {
	e       *engine
	lo, hi  int
	pos     [][][]int        // [d-lo][li][mi]: source position of prompt d, layer index li, method mi
	srcs    []srcPoint       // the distinct source points, in first-use order
	srcIdx  map[srcPoint]int // source point -> its index in srcs
	y       []int64          // [len(srcs)]: source top-1
	lse     []float32        // [len(srcs)]: log Σ exp(source logits)
	rowIdx  map[rowKey]int   // kept residual -> its row in the table
	nRows   int              // rows kept so far
	pieces  []*torch.Tensor  // the source batches' rows (R_b, C), in row order; one table (R, C) once joined
	table   *torch.Tensor    // (R, C): every kept row, after joinRows
	lastRow []int            // [len(srcs)]: the table row of the source point's final residual
}

// evalChunk evaluates prompts [lo, hi) and fills in their results.
func (e *engine) evalChunk(ctx context.Context, lo, hi int) error {
	c := e.newChunk(lo, hi)
	defer c.close()
	if err := c.sourcePass(ctx); err != nil {
		return err
	}
	return c.continuationPass(ctx)
}

// newChunk draws the source position of every (prompt, layer, method) of prompts [lo, hi) and
// lists the distinct source points.
func (e *engine) newChunk(lo, hi int) *chunk {
	c := &chunk{e: e, lo: lo, hi: hi, pos: make([][][]int, hi-lo), srcIdx: map[srcPoint]int{}, rowIdx: map[rowKey]int{}}
	nl := len(e.req.Layers)
	for d := lo; d < hi; d++ {
		c.pos[d-lo] = make([][]int, nl)
		for li, l := range e.req.Layers {
			c.pos[d-lo][li] = make([]int, len(e.req.Methods))
			for mi := range e.req.Methods {
				p := e.req.positionOf(d, li, mi, l)
				c.pos[d-lo][li][mi] = p
				e.res.Methods[mi].Position[d*nl+li] = int64(p)
				if sp := (srcPoint{d, p}); !c.has(sp) {
					c.srcIdx[sp] = len(c.srcs)
					c.srcs = append(c.srcs, sp)
				}
			}
		}
	}
	c.y = make([]int64, len(c.srcs))
	c.lse = make([]float32, len(c.srcs))
	return c
}

func (c *chunk) has(sp srcPoint) bool { _, ok := c.srcIdx[sp]; return ok }

func (c *chunk) close() {
	for _, t := range c.pieces {
		t.Close()
	}
}

// sourcePass runs the source forward over the chunk's prompts, longest first, in batches of
// similar length (bucketEnd), halving a batch that runs out of memory.
func (c *chunk) sourcePass(ctx context.Context) error {
	e := c.e
	t0 := time.Now()
	docs := make([]int, 0, c.hi-c.lo)
	for d := c.lo; d < c.hi; d++ {
		docs = append(docs, d)
	}
	sort.SliceStable(docs, func(i, j int) bool { return len(e.req.Prompts[docs[i]]) > len(e.req.Prompts[docs[j]]) })
	next := func(i int) int { return e.bucketEnd(docs, i) }
	run := func(i, j int) error { return c.sourceBatch(ctx, docs[i:j]) }
	if err := e.retryHalving(ctx, len(docs), &e.srcLimit, next, run); err != nil {
		return err
	}
	e.res.Stats.SourceSeconds += time.Since(t0).Seconds()
	nl := len(e.req.Layers)
	for d := c.lo; d < c.hi; d++ {
		for li := range e.req.Layers {
			for mi := range e.req.Methods {
				e.res.Methods[mi].SourceTop1[d*nl+li] = c.y[c.srcIdx[srcPoint{d, c.pos[d-c.lo][li][mi]}]]
			}
		}
	}
	return nil
}

// sourcePlan is what one source forward keeps.
type sourcePlan struct {
	seqs     [][]int
	req      gptj.Request     // Resid: the rows to keep per layer; LogitPoints: one per source point
	keys     map[int][]rowKey // per layer: the rowKey of each row in req.Resid[l]
	logitSrc []int            // per logit point: the index of its source point
}

// planSource lists, for prompts docs, the residual rows the methods read (at each requested
// layer, and at the last for paper_surprisal) and the points whose logits the metrics need.
func (c *chunk) planSource(docs []int) *sourcePlan {
	req, L := c.e.req, c.e.L
	sp := &sourcePlan{seqs: make([][]int, len(docs)), req: gptj.Request{Resid: map[int][]gptj.Point{}}, keys: map[int][]rowKey{}}
	added := map[rowKey]bool{}
	add := func(seq int, k rowKey) {
		if !added[k] {
			added[k] = true
			sp.keys[k.l] = append(sp.keys[k.l], k)
			sp.req.Resid[k.l] = append(sp.req.Resid[k.l], gptj.Point{Seq: seq, Pos: k.p})
		}
	}
	for i, d := range docs {
		sp.seqs[i] = req.Prompts[d]
		seen := map[int]bool{}
		for li, l := range req.Layers {
			for mi := range req.Methods {
				p := c.pos[d-c.lo][li][mi]
				add(i, rowKey{l, d, p})
				add(i, rowKey{L - 1, d, p}) // final residual for paper_surprisal
				if !seen[p] {
					seen[p] = true
					sp.req.LogitPoints = append(sp.req.LogitPoints, gptj.Point{Seq: i, Pos: p})
					sp.logitSrc = append(sp.logitSrc, c.srcIdx[srcPoint{d, p}])
				}
			}
		}
	}
	return sp
}

// sourceBatch runs the source forward for prompts docs and records the residual rows, the
// source top-1 and the log-partition of every source point of those prompts.
func (c *chunk) sourceBatch(ctx context.Context, docs []int) error {
	sp := c.planSource(docs)
	out, err := c.e.m.Forward(ctx, sp.seqs, sp.req)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := c.sourceMetrics(out.Logits, sp.logitSrc); err != nil {
		return err
	}
	// keep the rows; order the layers for determinism
	layers := make([]int, 0, len(sp.keys))
	for l := range sp.keys {
		layers = append(layers, l)
	}
	sort.Ints(layers)
	for _, l := range layers {
		for i, k := range sp.keys[l] {
			c.rowIdx[k] = c.nRows + i
		}
		c.nRows += len(sp.keys[l])
		c.pieces = append(c.pieces, out.Resid[l]) // (len(keys[l]), C)
		delete(out.Resid, l)                      // now owned by the chunk
	}
	c.e.res.Stats.SourceBatches++
	c.e.res.Stats.SourceTokens += int64(len(docs) * out.T)
	return nil
}

// sourceMetrics records the top-1 and the log-partition of each row of logits (P, V) at the
// row's source point.
func (c *chunk) sourceMetrics(logits *torch.Tensor, logitSrc []int) error {
	s := torch.NewScope()
	defer s.Close()
	top := s.Argmax(logits, 1, true)                   // (P, 1)
	logitY := s.Gather(logits, 1, top)                 // (P, 1)
	logpY := s.Gather(s.LogSoftmax(logits, 1), 1, top) // (P, 1)
	lse := s.Sub(logitY, logpY)                        // (P, 1): log Σ exp(logits)
	if err := s.Err(); err != nil {
		return err
	}
	ys, err := top.Int64s()
	if err != nil {
		return err
	}
	ls, err := lse.Float32s()
	if err != nil {
		return err
	}
	for i, si := range logitSrc {
		c.y[si] = ys[i]
		c.lse[si] = ls[i]
	}
	return nil
}

// continuationPass decodes every item of the chunk: each group's source rows continue from its
// start block after its prefix, e.rows at a time, halved on out-of-memory.
func (c *chunk) continuationPass(ctx context.Context) error {
	e := c.e
	t0 := time.Now()
	defer func() { e.res.Stats.PatchSeconds += time.Since(t0).Seconds() }()
	if err := c.joinRows(); err != nil {
		return err
	}
	for _, g := range c.groups() {
		next := func(i int) int { return min(len(g.items), i+e.rows) }
		run := func(i, j int) error {
			if err := c.patchBatch(ctx, g, g.items[i:j]); err != nil {
				return err
			}
			e.done += int64(j - i)
			if e.req.Progress != nil {
				e.req.Progress(e.done, e.total)
			}
			return nil
		}
		if err := e.retryHalving(ctx, len(g.items), &e.rows, next, run); err != nil {
			return err
		}
	}
	return nil
}

// joinRows concatenates the source batches' rows into one table (R, C), which replaces them,
// and finds each source point's final-residual row.
func (c *chunk) joinRows() error {
	if len(c.pieces) > 1 {
		s := torch.NewScope()
		defer s.Close()
		t := s.Cat(c.pieces, 0) // (R, C)
		if err := s.Err(); err != nil {
			return err
		}
		for _, p := range c.pieces { // the table holds its own copy
			p.Close()
		}
		c.pieces = []*torch.Tensor{s.Keep(t)}
	}
	c.table = c.pieces[0]
	c.lastRow = make([]int, len(c.srcs))
	for i, sp := range c.srcs {
		c.lastRow[i] = c.rowIdx[rowKey{c.e.L - 1, sp.d, sp.p}]
	}
	return nil
}

// groups lists the chunk's items grouped by (method, start block), in first-seen order. Items
// that run no block (start = L) form one group whatever their method: the prefix does not
// matter there. An affine method's items are grouped by source layer (each layer its own map).
func (c *chunk) groups() []*group {
	req, L := c.e.req, c.e.L
	type key struct{ mi, start, layer int }
	byKey := map[key]*group{}
	var gs []*group
	for d := c.lo; d < c.hi; d++ {
		for li, l := range req.Layers {
			for mi, meth := range req.Methods {
				p := c.pos[d-c.lo][li][mi]
				row, src := c.rowIdx[rowKey{l, d, p}], c.srcIdx[srcPoint{d, p}]
				for ti, t := range meth.targetLayers(l, L) {
					k := key{mi, t + 1, -1}
					if meth.Kind == KindAffine {
						k.layer = l
					} else if k.start == L {
						k.mi = -1
					}
					g := byKey[k]
					if g == nil {
						g = &group{start: k.start}
						if meth.Kind == KindAffine {
							a := meth.Affine[l]
							g.prefix, g.affine = emptyPrefix(), &a
						} else {
							g.prefix = c.e.prefixOf(k.mi)
						}
						byKey[k] = g
						gs = append(gs, g)
					}
					g.items = append(g.items, item{mi: mi, d: d, li: li, ti: ti, start: k.start, row: row, src: src})
				}
			}
		}
	}
	return gs
}

// patchBatch decodes items its of group g: their source rows (N, C) continue from block g.start
// after g's prefix, and the patched logits (N, V) are compared with the source prediction.
func (c *chunk) patchBatch(ctx context.Context, g *group, its []item) error {
	s := torch.NewScope()
	defer s.Close()
	m, n := c.e.m, int64(len(its))
	rowIdx, lastIdx, ys := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, it := range its {
		rowIdx[i] = int64(it.row)
		lastIdx[i] = int64(c.lastRow[it.src])
		ys[i] = c.y[it.src]
	}
	h := c.tableRows(s, rowIdx) // (N, C)
	if g.affine != nil {
		h = applyAffine(s, h, g.affine) // h·W_ℓ + b_ℓ (N, C)
	}
	if err := s.Err(); err != nil {
		return err
	}
	logits, err := m.Continue(ctx, h, g.start, g.prefix) // (N, V) float32
	if err != nil {
		return err
	}
	s.Own(logits, nil)
	yT := torch.ScopeFromSlice(s, ys, []int64{n, 1}, torch.Int64, m.Device) // (N, 1)
	top := s.Argmax(logits, 1, false)                                       // (N)
	logpY := s.Reshape(s.Gather(s.LogSoftmax(logits, 1), 1, yT), n)         // (N)
	srcLogit := m.LogitsAt(s, c.tableRows(s, lastIdx), top)                 // (N): source logit of the patched top-1
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
	c.record(its, tops, lp, sl)
	return nil
}

// tableRows gathers rows idx of the table: (len(idx), C).
func (c *chunk) tableRows(s *torch.Scope, idx []int64) *torch.Tensor {
	it := torch.ScopeFromSlice(s, idx, []int64{int64(len(idx))}, torch.Int64, c.e.m.Device)
	return s.IndexSelect(c.table, 0, it)
}

// record writes the metrics of items its from the patched top-1 tops, log p_patched(source
// top-1) lp, and the source logit of the patched top-1 sl.
func (c *chunk) record(its []item, tops []int64, lp, sl []float32) {
	nl := len(c.e.req.Layers)
	for i, it := range its {
		mr := &c.e.res.Methods[it.mi]
		nt := max(1, len(mr.TargetLayers))
		k := (it.d*nl+it.li)*nt + it.ti
		mr.PatchedTop1[k] = tops[i]
		mr.Prec1[k] = 0
		if tops[i] == c.y[it.src] {
			mr.Prec1[k] = 1
		}
		mr.Surprisal[k] = -lp[i]
		mr.PaperSurprisal[k] = c.lse[it.src] - sl[i]
	}
	c.e.res.Stats.PatchBatches++
	c.e.res.Stats.PatchedRows += int64(len(its))
}
