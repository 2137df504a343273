package patching

import (
	"context"
	"fmt"
	"github.com/simplescope/simplescope/core/batch"
	"github.com/simplescope/simplescope/core/errs"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// Options bound the batches (0: defaults for the device) and report progress.
type Options struct {
	Rows     int                     // rows per batch
	Tokens   int                     // padded tokens per tail batch
	Progress func(done, total int64) // rows finished so far, of all rows (may be nil)
	// Deterministic fixes the default batch sizes (those of the device type) instead of
	// deriving the token budget from the device's free memory: batch composition, and so the
	// results bit for bit on one device and dtype, do not depend on what else the device holds.
	Deterministic bool

	limit int // items per batch at most once a batch ran out of memory (batch.RetryHalving)
}

func (o *Options) defaults(ctx context.Context, m *gptj.Model) {
	onGPU := m.Device.Type == torch.DevCUDA
	if o.Rows <= 0 {
		o.Rows = 512
		if onGPU {
			o.Rows = 8192
		}
	}
	if o.Tokens <= 0 {
		o.Tokens = 8192
		if onGPU {
			o.Tokens = 65536
		}
		if !o.Deterministic {
			if budget, ok := batch.DeviceBudget(ctx, m.Device); ok {
				o.Tokens = batch.Tokens(budget, m.Cfg.NEmbd, m.DType.Size())
			}
		}
	}
}

// inBatches runs items [0, n) in batches of at most size items, a batch that runs out of memory
// run again as its first half (batch.RetryHalving); it returns the number of retries.
func (o *Options) inBatches(ctx context.Context, n, size int, run func(lo, hi int) error) (int, error) {
	return batch.RetryHalving(ctx, n, &o.limit, func(i int) int { return min(n, i+size) }, run)
}

// Stats counts what a call did.
type Stats struct {
	PrefixPasses int `msgpack:"prefix_passes"` // shared target prefixes computed
	Batches      int `msgpack:"batches"`       // batches run
	Retries      int `msgpack:"retries"`       // batches halved after running out of memory
}

// Patch writes vecs[i] (N, C; the model's dtype and device) into rows[i] and returns the
// next-token logits at the last position of every target, (N, V) float32, in row order.
func Patch(ctx context.Context, m *gptj.Model, rows []Row, vecs *torch.Tensor, site Site, opt Options) (*torch.Tensor, Stats, error) {
	return PatchOn(ctx, []*gptj.Model{m}, rows, vecs, site, opt)
}

// PatchOn is Patch with the batches split over replicas of one model (ms[0]'s device holds vecs
// and the result): the results equal one replica's (replicas.go).
func PatchOn(ctx context.Context, ms []*gptj.Model, rows []Row, vecs *torch.Tensor, site Site, opt Options) (*torch.Tensor, Stats, error) {
	m := ms[0]
	if err := checkVectors(m, vecs, len(rows)); err != nil {
		return nil, Stats{}, err
	}
	if err := CheckRows(m, rows, "targets"); err != nil {
		return nil, Stats{}, err
	}
	opt.defaults(ctx, m)
	f, err := newFleet(ms, vecs)
	if err != nil {
		return nil, Stats{}, err
	}
	defer f.close()
	s := torch.NewScope()
	defer s.Close()
	var pieces []*torch.Tensor // (n_j, V) per batch
	var order []int64          // the row of each piece row
	size := func(j job) int {
		if j.start >= 0 { // continuations: one position per row
			return opt.Rows
		}
		return max(1, min(opt.Rows, opt.Tokens/max(1, maxLen(rows, j.rows)-j.prefixLen)))
	}
	st, err := runJobs(ctx, f, plan(rows, site, true), len(rows), &opt, size, func(ctx context.Context, k int, j job, prefix *gptj.Prefix, idx []int) error {
		lg, err := patchBatch(ctx, ms[k], rows, idx, f.vecs[k], site, j, prefix)
		if err != nil {
			return err
		}
		if ms[k].Device != m.Device { // the result lives on the first replica's device
			ts := torch.NewScope()
			moved := ts.Keep(ts.To(lg, torch.Float32, m.Device))
			ts.Close()
			lg.Close()
			if moved == nil {
				return fmt.Errorf("logits to %s: %w", m.Device, ts.Err())
			}
			lg = moved
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		pieces = append(pieces, s.Own(lg, nil))
		for _, i := range idx {
			order = append(order, int64(i))
		}
		return nil
	})
	if err != nil {
		return nil, st, err
	}
	return inRowOrder(s, pieces, order), st, s.Err()
}

// withPrefix computes the job's shared prefix, runs f with it and frees it.
func withPrefix(ctx context.Context, m *gptj.Model, j job, f func(*gptj.Prefix) error) error {
	prefix, err := m.ComputePrefix(ctx, j.target[:j.prefixLen])
	if err != nil {
		return fmt.Errorf("target prefix: %w", err)
	}
	defer prefix.Close()
	return f(prefix)
}

// patchBatch returns the logits (n, V) float32 of rows idx of job j.
func patchBatch(ctx context.Context, m *gptj.Model, rows []Row, idx []int, vecs *torch.Tensor, site Site, j job, prefix *gptj.Prefix) (*torch.Tensor, error) {
	s := torch.NewScope()
	defer s.Close()
	if j.start >= 0 { // one position per row, from the patched block on
		h := s.IndexSelect(vecs, 0, indexTensor(s, idx, vecs.Device())) // (n, C)
		if err := s.Err(); err != nil {
			return nil, err
		}
		return m.Continue(ctx, h, j.start, prefix)
	}
	tb := newTails(s, m, rows, idx, j.prefixLen)
	w := newWriter(s, rows, idx, vecs, tb)
	x := m.Embed(s, tb.ids, tb.pos) // (B, T, C)
	x, _ = m.RunBlocks(ctx, s, x, w.pass(s, m, tb, prefix, site, false))
	logits := m.Logits(s, tb.lastRows(s, x)) // (B, V)
	if err := s.Err(); err != nil {
		return nil, err
	}
	return s.Keep(logits), nil
}

// inRowOrder concatenates the pieces (n_j, V) and puts row order[k] of the result at k.
func inRowOrder(s *torch.Scope, pieces []*torch.Tensor, order []int64) *torch.Tensor {
	all := pieces[0]
	if len(pieces) > 1 {
		all = s.Cat(pieces, 0) // (N, V)
	}
	inv := make([]int64, len(order))
	for k, i := range order {
		inv[i] = int64(k)
	}
	out := s.IndexSelect(all, 0, torch.ScopeFromSlice(s, inv, []int64{int64(len(inv))}, torch.Int64, all.Device()))
	return s.Keep(out)
}

func indexTensor(s *torch.Scope, idx []int, dev torch.Device) *torch.Tensor {
	v := make([]int64, len(idx))
	for k, i := range idx {
		v[k] = int64(i)
	}
	return torch.ScopeFromSlice(s, v, []int64{int64(len(v))}, torch.Int64, dev)
}

func maxLen(rows []Row, idx []int) int {
	n := 0
	for _, i := range idx {
		n = max(n, len(rows[i].Target))
	}
	return n
}

// checkVectors: vecs is (n, C) in the model's dtype on its device (nil allowed when n rows
// write nothing, as in Generate without a patch).
func checkVectors(m *gptj.Model, vecs *torch.Tensor, n int) error {
	if vecs == nil {
		return errs.Input("vectors: none given")
	}
	sh := vecs.Shape()
	if len(sh) != 2 || sh[0] != int64(n) || sh[1] != int64(m.Cfg.NEmbd) {
		return errs.Input("vectors: shape %s, want [%d, %d] (rows, d_model)", torch.ShapeString(sh), n, m.Cfg.NEmbd)
	}
	if vecs.DType() != m.DType || vecs.Device() != m.Device {
		return fmt.Errorf("vectors: %s on %s, want %s on %s (converted by the caller)", vecs.DType(), vecs.Device(), m.DType, m.Device)
	}
	return nil
}
