package patching

import (
	"context"
	"github.com/simplescope/simplescope/core/errs"
	"sort"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// Read names one hidden state: the output of block Layer (resid_post, before ln_f for the last
// block) of Prompt at Position (resolved, in [0, len(Prompt))).
type Read struct {
	Prompt   []int
	Layer    int
	Position int
}

// HiddenStates returns the hidden state of every read, (N, C) in the model's dtype and device, in
// order. Each distinct prompt runs once, prompts batched by length under opt.Tokens; a batch
// that runs out of memory is halved and retried.
func HiddenStates(ctx context.Context, m *gptj.Model, reads []Read, opt Options) (*torch.Tensor, Stats, error) {
	var st Stats
	if err := checkReads(m, reads); err != nil {
		return nil, st, err
	}
	opt.defaults(ctx, m)
	prompts, of := distinctPrompts(reads)
	byLen := make([]int, len(prompts)) // prompt indices, longest first
	for i := range byLen {
		byLen[i] = i
	}
	sort.SliceStable(byLen, func(a, b int) bool { return len(prompts[byLen[a]]) > len(prompts[byLen[b]]) })
	s := torch.NewScope()
	defer s.Close()
	var pieces []*torch.Tensor
	var order []int64
	size := max(1, opt.Tokens/len(prompts[byLen[0]]))
	retries, err := opt.inBatches(ctx, len(byLen), size, func(lo, hi int) error {
		got, rowsOf, err := readBatch(ctx, m, prompts, byLen[lo:hi], reads, of)
		if err != nil {
			return err
		}
		pieces = append(pieces, s.Own(got, nil))
		order = append(order, rowsOf...)
		st.Batches++
		return nil
	})
	st.Retries = retries
	if err != nil {
		return nil, st, err
	}
	return inRowOrder(s, pieces, order), st, s.Err()
}

// readBatch runs prompts batch and returns the reads of those prompts (n, C) and which read each
// row answers.
func readBatch(ctx context.Context, m *gptj.Model, prompts [][]int, batch []int, reads []Read, of []int) (*torch.Tensor, []int64, error) {
	local := map[int]int{}
	seqs := make([][]int, len(batch))
	for k, p := range batch {
		local[p], seqs[k] = k, prompts[p]
	}
	want := map[int][]gptj.Point{}
	readsAt := map[int][]int64{}
	for r, rd := range reads {
		if k, ok := local[of[r]]; ok {
			want[rd.Layer] = append(want[rd.Layer], gptj.Point{Seq: k, Pos: rd.Position})
			readsAt[rd.Layer] = append(readsAt[rd.Layer], int64(r))
		}
	}
	out, err := m.Forward(ctx, seqs, gptj.Request{Resid: want})
	if err != nil {
		return nil, nil, err
	}
	defer out.Close()
	layers := make([]int, 0, len(want))
	for l := range want {
		layers = append(layers, l)
	}
	sort.Ints(layers)
	s := torch.NewScope()
	defer s.Close()
	var parts []*torch.Tensor
	var rowsOf []int64
	for _, l := range layers {
		parts = append(parts, out.Resid[l]) // (n_l, C)
		rowsOf = append(rowsOf, readsAt[l]...)
	}
	got := s.Cat(parts, 0) // (n, C)
	if err := s.Err(); err != nil {
		return nil, nil, err
	}
	return s.Keep(got), rowsOf, nil
}

// distinctPrompts returns each distinct prompt once and, per read, the index of its prompt.
func distinctPrompts(reads []Read) ([][]int, []int) {
	index := map[string]int{}
	var prompts [][]int
	of := make([]int, len(reads))
	for r, rd := range reads {
		k := key(rd.Prompt)
		i, ok := index[k]
		if !ok {
			i = len(prompts)
			index[k] = i
			prompts = append(prompts, rd.Prompt)
		}
		of[r] = i
	}
	return prompts, of
}

func checkReads(m *gptj.Model, reads []Read) error {
	if len(reads) == 0 {
		return errs.Input("no prompts given")
	}
	rows := make([]Row, len(reads))
	for i, rd := range reads {
		rows[i] = Row{Target: rd.Prompt, Layer: rd.Layer, Positions: []int{rd.Position}}
	}
	return CheckRows(m, rows, "prompts")
}
