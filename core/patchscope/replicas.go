package patchscope

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/simplescope/simplescope/core/batch"
	"github.com/simplescope/simplescope/core/gptj"
)

// evaluateReplicas is EvaluateOn over several replicas: one engine per replica, each in a
// goroutine of its own (batch.Parallel), writing its chunks' results into the one Result (the
// chunks' entries are disjoint). The first failure cancels the others.
func evaluateReplicas(ctx context.Context, ms []*gptj.Model, req Request) (*Result, error) {
	n := len(ms)
	engines := make([]*engine, n)
	for k, m := range ms {
		rk := req
		engines[k] = &engine{m: m, req: &rk, L: ms[0].Cfg.NLayer}
		engines[k].defaults(ctx)
	}
	res := engines[0].allocate()
	total := engines[0].total
	res.Stats.BatchTokens, res.Stats.PatchRows, res.Stats.ChunkPrompts = engines[0].batchTok, engines[0].rows, engines[0].chunk
	if len(req.Prompts) == 0 {
		return res, nil
	}
	var progressMu sync.Mutex
	done := make([]atomic.Int64, n)
	for k, e := range engines {
		e.chunk = engines[0].chunk // the same chunks as on one device
		if k > 0 {
			// the same result arrays; stats of its own, added up below
			e.res = &Result{NPrompts: res.NPrompts, Layers: res.Layers, Methods: append([]MethodResult(nil), res.Methods...)}
			e.total = total
		} else {
			e.res = res
		}
		if req.Progress != nil {
			k := k
			e.req.Progress = func(d, _ int64) {
				done[k].Store(d)
				progressMu.Lock()
				defer progressMu.Unlock()
				sum := int64(0)
				for i := range done {
					sum += done[i].Load()
				}
				req.Progress(sum, total)
			}
		}
	}
	err := batch.Parallel(ctx, n, func(ctx context.Context, k int) error { return engines[k].run(ctx, k, n) })
	if err != nil {
		return nil, err
	}
	for _, e := range engines[1:] {
		st := e.res.Stats
		res.Stats.SourceBatches += st.SourceBatches
		res.Stats.PatchBatches += st.PatchBatches
		res.Stats.SourceTokens += st.SourceTokens
		res.Stats.PatchedRows += st.PatchedRows
		res.Stats.Retries += st.Retries
		res.Stats.SourceSeconds += st.SourceSeconds
		res.Stats.PatchSeconds += st.PatchSeconds
	}
	// the caps left after out-of-memory halvings: the tightest replica's
	res.Stats.PatchRowsFinal, res.Stats.SourceBatchCap = engines[0].rows, engines[0].srcLimit
	for _, e := range engines[1:] {
		res.Stats.PatchRowsFinal = min(res.Stats.PatchRowsFinal, e.rows)
		if e.srcLimit > 0 && (res.Stats.SourceBatchCap == 0 || e.srcLimit < res.Stats.SourceBatchCap) {
			res.Stats.SourceBatchCap = e.srcLimit
		}
	}
	return res, nil
}
