package patching

import (
	"context"
	"fmt"
	"github.com/simplescope/simplescope/core/errs"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// GenOptions says how to generate.
type GenOptions struct {
	Options
	MaxNew int // new tokens per row at most (>= 1)
	Sampler
	EOS int // the token that ends a row (left out of its tokens); -1: none
	// Stop, if set, is asked after every new token: true ends the row (that token kept).
	Stop func(row int, tokens []int) bool
}

// Generate runs every row's target with vecs written in (vecs (N, C), or nil for no patch) and
// then decodes up to opt.MaxNew tokens per row with a K/V cache: the patch belongs to the
// prompt pass only, every new token attends to the patched keys and values. It returns the new
// tokens of each row.
func Generate(ctx context.Context, m *gptj.Model, rows []Row, vecs *torch.Tensor, site Site, opt GenOptions) ([][]int, Stats, error) {
	return GenerateOn(ctx, []*gptj.Model{m}, rows, vecs, site, opt)
}

// GenerateOn is Generate with the batches split over replicas of one model (ms[0]'s device
// holds vecs): the tokens equal one replica's (replicas.go). opt.Stop may be called from several
// goroutines at once.
func GenerateOn(ctx context.Context, ms []*gptj.Model, rows []Row, vecs *torch.Tensor, site Site, opt GenOptions) ([][]int, Stats, error) {
	m := ms[0]
	if err := checkGen(m, rows, vecs, opt); err != nil {
		return nil, Stats{}, err
	}
	opt.defaults(ctx, m)
	f, err := newFleet(ms, vecs)
	if err != nil {
		return nil, Stats{}, err
	}
	defer f.close()
	out := make([][]int, len(rows))
	size := func(j job) int { return max(1, min(opt.Rows, opt.Tokens/max(1, maxLen(rows, j.rows)+opt.MaxNew))) }
	st, err := runJobs(ctx, f, plan(rows, site, false), len(rows), &opt.Options, size, func(ctx context.Context, k int, j job, prefix *gptj.Prefix, idx []int) error {
		d := decoder{m: ms[k], rows: rows, idx: idx, opt: &opt}
		if err := d.run(ctx, f.vecs[k], site, j.prefixLen, prefix); err != nil {
			return err
		}
		for b, i := range idx { // rows of this batch only: no other batch writes them
			out[i] = d.tokens[b]
		}
		return nil
	})
	if err != nil {
		return nil, st, err
	}
	return out, st, nil
}

func checkGen(m *gptj.Model, rows []Row, vecs *torch.Tensor, opt GenOptions) error {
	if opt.MaxNew < 1 {
		return errs.Input("max_new_tokens %d: want at least 1", opt.MaxNew)
	}
	if err := opt.Sampler.check(); err != nil {
		return err
	}
	for i, r := range rows {
		if n := len(r.Target) + opt.MaxNew; n > m.Cfg.NPositions {
			return errs.Input("targets row %d: %d target tokens + max_new_tokens %d exceed the model's context of %d", i, len(r.Target), opt.MaxNew, m.Cfg.NPositions)
		}
	}
	if vecs == nil {
		for i := range rows { // nothing is written: plan the prefix as everything but the last token
			rows[i].Positions = []int{len(rows[i].Target) - 1}
		}
	} else if err := checkVectors(m, vecs, len(rows)); err != nil {
		return err
	}
	return CheckRows(m, rows, "targets")
}

// decoder generates for one batch of rows that share a prefix.
type decoder struct {
	m      *gptj.Model
	rows   []Row
	idx    []int // the batch's rows (indices into rows)
	opt    *GenOptions
	tokens [][]int // new tokens per batch row

	s      *torch.Scope
	active []int        // batch rows still generating, in cache order
	next   []int        // per batch row, the absolute position of its next token
	valid  [][]bool     // per cache row, which keys are real (not padding): the prefix's, then the cache's
	keyPos [][]int64    // per cache row, the position of each of those keys (read by sliding windows)
	prefix *gptj.Prefix // the shared target prefix (1, Hkv, P, D) per block, attended by every row uncopied
	cache  gptj.KV      // (A, Hkv, K-P, D) per block: the active rows' own keys and values after the prefix
}

// run does the prompt pass (with the writes) and the decode steps.
func (d *decoder) run(ctx context.Context, vecs *torch.Tensor, site Site, P int, prefix *gptj.Prefix) error {
	d.s = torch.NewScope()
	defer d.s.Close()
	logits := d.prompt(ctx, vecs, site, P, prefix) // (B, V)
	for step := 0; ; step++ {
		if err := d.s.Err(); err != nil {
			return err
		}
		toks, err := d.opt.choose(d.s, logits, d.active, d.idx, step)
		if err != nil {
			return err
		}
		d.s.Free(logits)
		if !d.append(toks, step) {
			return nil
		}
		logits = d.step(ctx)
	}
}

// prompt runs the targets' tails after prefix with vecs written in, keeps every block's tail K/V
// as the cache (the prefix stays shared, batch 1), and returns the logits (B, V) at each row's
// last token.
func (d *decoder) prompt(ctx context.Context, vecs *torch.Tensor, site Site, P int, prefix *gptj.Prefix) *torch.Tensor {
	s, m := d.s, d.m
	B := len(d.idx)
	d.tokens = make([][]int, B)
	d.active = make([]int, B)
	d.next = make([]int, B)
	for b, i := range d.idx {
		d.active[b] = b
		d.next[b] = len(d.rows[i].Target)
	}
	ps := torch.NewScope()
	defer ps.Close()
	tb := newTails(ps, m, d.rows, d.idx, P)
	w := newWriter(ps, d.rows, d.idx, vecs, tb)
	x := m.Embed(ps, tb.ids, tb.pos) // (B, T, C)
	x, kv := m.RunBlocks(ctx, ps, x, w.pass(ps, m, tb, prefix, site, true))
	logits := s.Own(ps.Keep(m.Logits(ps, tb.lastRows(ps, x))), nil) // (B, V)
	if err := ps.Err(); err != nil {
		s.Fail(err)
		return nil
	}
	d.valid = tb.valid
	d.keyPos = make([][]int64, B)
	for b := range d.keyPos { // the prefix and the tail slots: key k sits at position k
		d.keyPos[b] = make([]int64, len(tb.valid[b]))
		for k := range d.keyPos[b] {
			d.keyPos[b][k] = int64(k)
		}
	}
	d.prefix = prefix
	d.cache = gptj.KV{K: make([]*torch.Tensor, m.Cfg.NLayer), V: make([]*torch.Tensor, m.Cfg.NLayer)}
	for l := range m.Cfg.NLayer {
		d.cache.K[l], d.cache.V[l] = s.Own(kv.K[l], nil), s.Own(kv.V[l], nil) // (B, H, T, D)
	}
	return logits
}

// append records the chosen token of every active row and drops the rows that end (EOS, a stop,
// max_new_tokens) from the batch and the cache. It reports whether any row goes on.
func (d *decoder) append(toks []int, step int) bool {
	var keep []int // positions in the cache of the rows that go on
	for a, b := range d.active {
		t := toks[a]
		if t == d.opt.EOS {
			continue
		}
		d.tokens[b] = append(d.tokens[b], t)
		if step+1 >= d.opt.MaxNew || (d.opt.Stop != nil && d.opt.Stop(d.idx[b], d.tokens[b])) {
			continue
		}
		keep = append(keep, a)
	}
	if len(keep) == 0 {
		return false
	}
	if len(keep) < len(d.active) {
		d.compact(keep)
	}
	return true
}

// compact keeps the cache rows keep (in order).
func (d *decoder) compact(keep []int) {
	s := d.s
	at := indexTensor(s, keep, d.m.Device)
	active := make([]int, len(keep))
	valid := make([][]bool, len(keep))
	keyPos := make([][]int64, len(keep))
	for k, a := range keep {
		active[k], valid[k], keyPos[k] = d.active[a], d.valid[a], d.keyPos[a]
	}
	for l := range d.cache.K {
		k, v := d.cache.K[l], d.cache.V[l]
		d.cache.K[l], d.cache.V[l] = s.IndexSelect(k, 0, at), s.IndexSelect(v, 0, at)
		s.Free(k, v)
	}
	s.Free(at)
	d.active, d.valid, d.keyPos = active, valid, keyPos
}

// step feeds the last chosen token of every active row and returns the next logits (A, V).
func (d *decoder) step(ctx context.Context) *torch.Tensor {
	s, m := d.s, d.m
	A := len(d.active)
	ids := make([]int64, A)
	pos := make([]int64, A)
	K := len(d.valid[0])
	mask := make([]uint8, A*(K+1))
	windowed := m.Cfg.Windowed()
	var pastPos []int64 // (A, K): the cached keys' positions, for sliding windows
	if windowed {
		pastPos = make([]int64, 0, A*K)
	}
	for a, b := range d.active {
		row := d.tokens[b]
		ids[a] = int64(row[len(row)-1])
		pos[a] = int64(d.next[b])
		d.next[b]++
		for k, ok := range d.valid[a] {
			if ok {
				mask[a*(K+1)+k] = 1
			}
		}
		mask[a*(K+1)+K] = 1
		d.valid[a] = append(d.valid[a], true)
		if windowed {
			pastPos = append(pastPos, d.keyPos[a]...)
		}
		d.keyPos[a] = append(d.keyPos[a], pos[a])
	}
	ss := torch.NewScope()
	defer ss.Close()
	dev := m.Device
	posT := torch.ScopeFromSlice(ss, pos, []int64{int64(A), 1}, torch.Int64, dev)
	x := m.Embed(ss, torch.ScopeFromSlice(ss, ids, []int64{int64(A), 1}, torch.Int64, dev), posT) // (A, 1, C)
	sin, cos := m.Angles(ss, posT)
	maskT := torch.ScopeFromSlice(ss, mask, []int64{int64(A), 1, 1, int64(K + 1)}, torch.Bool, dev)
	p := gptj.Pass{End: m.Cfg.NLayer, Sin: sin, Cos: cos, Mask: maskT, Shared: &d.prefix.KV, Past: &d.cache, CollectKV: true}
	if windowed {
		p.Pos, p.PastPos = posT, torch.ScopeFromSlice(ss, pastPos, []int64{int64(A), int64(K)}, torch.Int64, dev)
	}
	x, kv := m.RunBlocks(ctx, ss, x, p)
	logits := m.Logits(ss, ss.Reshape(x, int64(A), -1)) // (A, V)
	if err := ss.Err(); err != nil {
		s.Fail(fmt.Errorf("decode step: %w", err))
		return nil
	}
	defer kv.Close()
	for l := range d.cache.K {
		k, v := d.cache.K[l], d.cache.V[l]
		d.cache.K[l] = s.Cat([]*torch.Tensor{k, kv.K[l]}, 2) // (A, H, K+1, D)
		d.cache.V[l] = s.Cat([]*torch.Tensor{v, kv.V[l]}, 2)
		s.Free(k, v)
	}
	return s.Own(ss.Keep(logits), nil)
}
