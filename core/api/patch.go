package api

import (
	"context"
	"strings"

	"github.com/simplescope/simplescope/core/errs"
	"github.com/simplescope/simplescope/core/patching"
	"github.com/simplescope/simplescope/core/torch"
)

// The patching methods (docs/capi.md): hidden_states, patch and generate.

// promptsField is a list of prompts as texts or as token id lists.
type promptsField struct {
	Texts  []string `msgpack:"texts"`
	Tokens [][]int  `msgpack:"tokens"`
}

// readsField names hidden states: prompts, with a layer and a position per prompt.
type readsField struct {
	promptsField `msgpack:",inline"`
	Layers       []int `msgpack:"layers"`
	Positions    []int `msgpack:"positions"`
}

type affineField struct {
	W TensorArg `msgpack:"W"` // (d_in, d_model)
	B TensorArg `msgpack:"b"` // (d_model)
}

// patchFields are the fields patch and generate share.
type patchFields struct {
	Targets    promptsField `msgpack:"targets"`
	PrependBOS bool         `msgpack:"prepend_bos"`
	Site       string       `msgpack:"site"`
	Layers     []int        `msgpack:"layers"`    // per row
	Positions  [][]int      `msgpack:"positions"` // per row; negative counts from the end
	Vectors    *TensorArg   `msgpack:"vectors"`   // (n, d_in) or (d_in)
	Source     *readsField  `msgpack:"source"`
	Transform  *affineField `msgpack:"transform"`
	BatchRows  int          `msgpack:"batch_rows"`
	// Deterministic: batch sizes fixed per device type, not from free memory (patching.Options)
	Deterministic bool `msgpack:"deterministic"`
}

func (s *Session) hiddenStates(ctx context.Context, req []byte, _ func(int64, int64)) (any, error) {
	var r struct {
		readsField `msgpack:",inline"`
		PrependBOS bool `msgpack:"prepend_bos"`
	}
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	vecs, err := s.read(ctx, &r.readsField, r.PrependBOS, "prompts")
	if err != nil {
		return nil, err
	}
	return map[string]any{"vectors": TensorOut(vecs)}, nil
}

// read returns the hidden states (n, C) that f names, in the model's dtype.
func (s *Session) read(ctx context.Context, f *readsField, prependBOS bool, what string) (*torch.Tensor, error) {
	prompts, err := s.promptList(&f.promptsField, prependBOS, what)
	if err != nil {
		return nil, err
	}
	n := len(prompts)
	if len(f.Layers) != n || len(f.Positions) != n {
		return nil, errs.Input("%s: %d prompts, %d layers and %d positions (want one of each per prompt)", what, n, len(f.Layers), len(f.Positions))
	}
	reads := make([]patching.Read, n)
	for i, q := range prompts {
		p, ok := patching.ResolvePosition(f.Positions[i], len(q))
		if !ok {
			return nil, errs.Input("%s row %d: position %d outside its %d tokens (allowed: [%d, %d))", what, i, f.Positions[i], len(q), -len(q), len(q))
		}
		reads[i] = patching.Read{Prompt: q, Layer: f.Layers[i], Position: p}
	}
	vecs, _, err := patching.HiddenStates(ctx, s.Model, reads, patching.Options{})
	return vecs, err
}

// promptList tokenizes (or takes) the prompts of f, with BOS when asked; never truncated.
func (s *Session) promptList(f *promptsField, prependBOS bool, what string) ([][]int, error) {
	out, _, err := s.prompts(f.Texts, f.Tokens, prependBOS, false)
	if err != nil {
		return nil, errs.Input("%s: %v", what, err)
	}
	return out, nil
}

func (s *Session) patch(ctx context.Context, req []byte, progress func(int64, int64)) (any, error) {
	var r patchFields
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	rows, site, err := s.patchRows(&r)
	if err != nil {
		return nil, err
	}
	vecs, err := s.patchVectors(ctx, &r, len(rows))
	if err != nil {
		return nil, err
	}
	defer vecs.Close()
	logits, st, err := patching.PatchOn(ctx, s.replicas(), rows, vecs, site, patching.Options{Rows: r.BatchRows, Progress: progress, Deterministic: r.Deterministic})
	if err != nil {
		return nil, err
	}
	return map[string]any{"logits": TensorOut(logits), "stats": st}, nil
}

func (s *Session) generate(ctx context.Context, req []byte, progress func(int64, int64)) (any, error) {
	var r struct {
		patchFields `msgpack:",inline"`
		MaxNew      int      `msgpack:"max_new_tokens"`
		DoSample    bool     `msgpack:"do_sample"`
		Temperature float64  `msgpack:"temperature"`
		TopK        int      `msgpack:"top_k"`
		TopP        float64  `msgpack:"top_p"`
		Seed        int64    `msgpack:"seed"`
		Stop        []string `msgpack:"stop"`
	}
	r.Temperature, r.TopP = 1, 1
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	if r.MaxNew < 1 || r.MaxNew > maxNewTokens {
		return nil, errs.Input("max_new_tokens %d: want an int in [1, %d]", r.MaxNew, maxNewTokens)
	}
	rows, site, err := s.patchRows(&r.patchFields)
	if err != nil {
		return nil, err
	}
	var vecs *torch.Tensor
	if r.Vectors != nil || r.Source != nil {
		if vecs, err = s.patchVectors(ctx, &r.patchFields, len(rows)); err != nil {
			return nil, err
		}
		defer vecs.Close()
	}
	opt := patching.GenOptions{
		Options: patching.Options{Rows: r.BatchRows, Progress: progress, Deterministic: r.Deterministic},
		MaxNew:  r.MaxNew, EOS: s.Model.Cfg.EOS,
		Sampler: patching.Sampler{Sample: r.DoSample, Temperature: r.Temperature, TopK: r.TopK, TopP: r.TopP, Seed: uint64(r.Seed)},
	}
	if len(r.Stop) > 0 {
		if opt.Stop, err = s.stopper(r.Stop); err != nil {
			return nil, err
		}
	}
	toks, st, err := patching.GenerateOn(ctx, s.replicas(), rows, vecs, site, opt)
	if err != nil {
		return nil, err
	}
	return map[string]any{"tokens": toks, "texts": s.texts(toks), "stats": st}, nil
}

// maxNewTokens bounds generate's max_new_tokens (the model's context bounds it further).
const maxNewTokens = 4096

// stopper ends a row once its decoded new tokens contain one of the stop strings.
func (s *Session) stopper(stops []string) (func(int, []int) bool, error) {
	tk, err := s.tok()
	if err != nil {
		return nil, errs.Input("stop strings need the model's tokenizer: %v", err)
	}
	for i, st := range stops {
		if st == "" {
			return nil, errs.Input("stop string %d is empty", i)
		}
	}
	return func(_ int, toks []int) bool {
		text, err := tk.DecodeText(toks)
		if err != nil {
			return false
		}
		for _, st := range stops {
			if strings.Contains(text, st) {
				return true
			}
		}
		return false
	}, nil
}

// texts decodes each row's tokens (empty strings without a tokenizer).
func (s *Session) texts(toks [][]int) []string {
	out := make([]string, len(toks))
	tk, err := s.tok()
	if err != nil {
		return out
	}
	for i, t := range toks {
		out[i], _ = tk.DecodeText(t)
	}
	return out
}

// patchRows builds the rows: targets (one for all rows, or one per row), each row's layer and
// resolved positions. Without layers, the rows are the targets with nothing written.
func (s *Session) patchRows(r *patchFields) ([]patching.Row, patching.Site, error) {
	site, err := patching.ParseSite(r.Site)
	if err != nil {
		return nil, 0, errs.Input("site: %v", err)
	}
	targets, err := s.promptList(&r.Targets, r.PrependBOS, "targets")
	if err != nil {
		return nil, 0, err
	}
	n := max(len(targets), len(r.Layers))
	if r.Layers == nil && (r.Vectors != nil || r.Source != nil) {
		return nil, 0, errs.Input("layers: required with vectors")
	}
	if r.Layers != nil && (len(r.Layers) != n || len(r.Positions) != n) {
		return nil, 0, errs.Input("%d layers and %d position lists for %d rows (want one each per row)", len(r.Layers), len(r.Positions), n)
	}
	if len(targets) != 1 && len(targets) != n {
		return nil, 0, errs.Input("%d targets for %d rows (want 1 or %d)", len(targets), n, n)
	}
	rows := make([]patching.Row, n)
	for i := range rows {
		rows[i].Target = targets[min(i, len(targets)-1)]
		if r.Layers == nil {
			continue
		}
		rows[i].Layer = r.Layers[i]
		if rows[i].Positions, err = resolvePositions(r.Positions[i], len(rows[i].Target), i); err != nil {
			return nil, 0, err
		}
	}
	return rows, site, nil
}

func resolvePositions(ps []int, n, row int) ([]int, error) {
	if len(ps) == 0 {
		return nil, errs.Input("positions row %d: empty", row)
	}
	out := make([]int, len(ps))
	for k, p := range ps {
		q, ok := patching.ResolvePosition(p, n)
		if !ok {
			return nil, errs.Input("positions row %d: position %d outside its target of %d tokens (allowed: [%d, %d))", row, p, n, -n, n)
		}
		out[k] = q
	}
	return out, nil
}

// patchVectors returns the n vectors to write (n, C) in the model's dtype: the given vectors or
// the Source's hidden states, through the affine transform if one is given.
func (s *Session) patchVectors(ctx context.Context, r *patchFields, n int) (*torch.Tensor, error) {
	if (r.Vectors == nil) == (r.Source == nil) {
		return nil, errs.Input("give either vectors or source")
	}
	dt := s.Model.DType
	if r.Transform != nil {
		dt = torch.Float32 // the affine map runs in float32
	}
	var v *torch.Tensor
	var err error
	if r.Source != nil {
		if v, err = s.read(ctx, r.Source, r.PrependBOS, "source"); err == nil && dt != s.Model.DType {
			v, err = convert(v, dt)
		}
	} else {
		v, err = s.tensorArg(*r.Vectors, "vectors", dt)
	}
	if err != nil {
		return nil, err
	}
	if v, err = broadcastRows(v, n, "vectors"); err != nil {
		return nil, err
	}
	if r.Transform != nil {
		return s.affine(v, r.Transform)
	}
	return v, nil
}

// broadcastRows makes v (n, d) from (n, d), (1, d) or (d); it takes ownership of v.
func broadcastRows(v *torch.Tensor, n int, name string) (*torch.Tensor, error) {
	sh := v.Shape()
	switch {
	case len(sh) == 2 && sh[0] == int64(n):
		return v, nil
	case len(sh) == 1 || (len(sh) == 2 && sh[0] == 1):
		s := torch.NewScope()
		defer s.Close()
		d := sh[len(sh)-1]
		out := s.Contiguous(s.Expand(s.Reshape(v, 1, d), int64(n), d))
		v.Close()
		if err := s.Err(); err != nil {
			return nil, err
		}
		return s.Keep(out), nil
	}
	v.Close()
	return nil, errs.Input("%s: shape %s, want [%d, d] or [d]", name, torch.ShapeString(sh), n)
}

// affine returns v @ W + b (n, C) in the model's dtype; v (n, d_in) float32 is freed.
func (s *Session) affine(v *torch.Tensor, f *affineField) (*torch.Tensor, error) {
	defer v.Close()
	C := int64(s.Model.Cfg.NEmbd)
	din := v.Shape()[1]
	sc := torch.NewScope()
	defer sc.Close()
	W, err := s.tensorArg(f.W, "transform W", torch.Float32)
	if err != nil {
		return nil, err
	}
	sc.Own(W, nil)
	b, err := s.tensorArg(f.B, "transform b", torch.Float32)
	if err != nil {
		return nil, err
	}
	sc.Own(b, nil)
	if ws := W.Shape(); len(ws) != 2 || ws[0] != din || ws[1] != C {
		return nil, errs.Input("transform W: shape %s, want [%d, %d] (d_in of the vectors, d_model)", torch.ShapeString(ws), din, C)
	}
	if bs := b.Shape(); len(bs) != 1 || bs[0] != C {
		return nil, errs.Input("transform b: shape %s, want [%d] (d_model)", torch.ShapeString(bs), C)
	}
	out := sc.To(sc.Add(sc.Matmul(v, W), b), s.Model.DType, s.Model.Device) // (n, C)
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return sc.Keep(out), nil
}

// convert returns t in dtype dt on its device; t is freed.
func convert(t *torch.Tensor, dt torch.DType) (*torch.Tensor, error) {
	defer t.Close()
	s := torch.NewScope()
	defer s.Close()
	out := s.To(t, dt, t.Device())
	if err := s.Err(); err != nil {
		return nil, err
	}
	return s.Keep(out), nil
}
