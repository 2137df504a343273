package api

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/simplescope/simplescope/core/data"
	"github.com/simplescope/simplescope/core/errs"
	"github.com/simplescope/simplescope/core/patchscope"
	"github.com/simplescope/simplescope/core/torch"
)

// MethodSpec is a method as the caller names it: a built-in name, or a target prompt with its
// placeholder.
type MethodSpec struct {
	Name         string          `msgpack:"name"`
	Kind         string          `msgpack:"kind"`          // "logitlens" or "patch"; empty = built-in name or patch
	Target       string          `msgpack:"target"`        // target prompt text
	TargetTokens []int           `msgpack:"target_tokens"` // or its tokens (BOS not added)
	Placeholder  any             `msgpack:"placeholder"`   // text (default "?") or a token index (negative from the end)
	TargetLayer  any             `msgpack:"target_layer"`  // "same" (default), "last", "all" or a block index
	Maps         []AffineMapSpec `msgpack:"maps"`          // kind "affine": one map per source layer (affine.go)
}

// EvalRequest is the evaluate request. Positions, Seed and PrependBOS left out (nil) take the
// preset's values when a preset is named, else "random", 0 and false.
type EvalRequest struct {
	Texts        []string     `msgpack:"texts"`
	Tokens       [][]int      `msgpack:"tokens"`
	PrependBOS   *bool        `msgpack:"prepend_bos"`
	Methods      []MethodSpec `msgpack:"methods"`
	Positions    any          `msgpack:"positions"` // a mode (patchscope.PositionModes) or an int64 Array [n] / [n, n_layers]
	Layers       []int        `msgpack:"layers"`
	Seed         any          `msgpack:"seed"`     // an integer in int64
	Preset       string       `msgpack:"preset"`   // data.PresetByName: defaults for the three above, recorded
	TF32         *bool        `msgpack:"tf32"`     // CUDA: allow TF32 during the call (nil: leave the setting)
	Truncate     bool         `msgpack:"truncate"` // cut prompts to the context (else: error)
	BatchTokens  int          `msgpack:"batch_tokens"`
	PatchRows    int          `msgpack:"patch_rows"`
	ChunkPrompts int          `msgpack:"chunk_prompts"`
	// Deterministic: batch sizes fixed per device type, not from free memory (patchscope.Request)
	Deterministic bool `msgpack:"deterministic"`
}

// resolveMethod turns a spec into an engine method.
func (s *Session) resolveMethod(sp MethodSpec, prependBOS bool) (patchscope.Method, map[string]any, error) {
	name := sp.Name
	m := patchscope.Method{Name: name, Kind: sp.Kind, TargetMode: patchscope.TargetSame}
	switch {
	case sp.Kind == "" && name == "logitlens":
		m.Kind = patchscope.KindLogitLens
	case sp.Kind == "" && name == "patchscope" && sp.Target == "" && sp.TargetTokens == nil:
		m.Kind, sp.Target = patchscope.KindPatch, patchscope.PatchscopePrompt
	case sp.Kind == "" && name == "simplescope" && sp.Target == "" && sp.TargetTokens == nil:
		m.Kind, sp.Target = patchscope.KindPatch, patchscope.SimplescopePrompt
	case sp.Kind == patchscope.KindAffine || (sp.Kind == "" && sp.Maps != nil):
		return s.resolveAffine(sp)
	case sp.Kind == "" && sp.Target == "" && sp.TargetTokens == nil:
		return m, nil, errs.Input("unknown method %q (built-in: logitlens, patchscope, simplescope; a custom method needs a target prompt)", name)
	case sp.Kind == "":
		m.Kind = patchscope.KindPatch
	}
	info := map[string]any{"name": name, "kind": m.Kind}
	if m.Kind == patchscope.KindLogitLens {
		return m, info, nil
	}
	if m.Kind != patchscope.KindPatch {
		return m, nil, errs.Input("method %q: unknown kind %q (want logitlens, patch or affine)", name, sp.Kind)
	}
	var prefixBOS []int
	if prependBOS {
		bos, err := s.bos()
		if err != nil {
			return m, nil, err
		}
		prefixBOS = []int{bos}
	}
	switch ph := sp.Placeholder.(type) {
	case nil, string:
		text := "?"
		if str, ok := ph.(string); ok {
			text = str
		}
		if sp.TargetTokens != nil {
			return m, nil, errs.Input("method %q: a placeholder text needs a target text, not tokens (give the placeholder as a token index)", name)
		}
		if text == "" {
			return m, nil, errs.Input("method %q: empty placeholder", name)
		}
		at := strings.LastIndex(sp.Target, text)
		if at < 0 {
			return m, nil, errs.Input("method %q: target prompt %q does not contain its placeholder %q", name, sp.Target, text)
		}
		tk, err := s.tok()
		if err != nil {
			return m, nil, err
		}
		head := tk.Encode(sp.Target[:at+len(text)])
		m.Target = append(append(prefixBOS, head...), tk.Encode(sp.Target[at+len(text):])...)
		m.Placeholder = len(prefixBOS) + len(head) - 1
	default:
		idx, ok := toInt(ph)
		if !ok {
			return m, nil, errs.Input("method %q: placeholder must be a text or a token index, got %T", name, ph)
		}
		toks := sp.TargetTokens
		if toks == nil {
			tk, err := s.tok()
			if err != nil {
				return m, nil, err
			}
			toks = tk.Encode(sp.Target)
		}
		if len(toks) == 0 {
			return m, nil, errs.Input("method %q: empty target prompt", name)
		}
		if idx < 0 {
			idx += len(toks)
		}
		if idx < 0 || idx >= len(toks) {
			return m, nil, errs.Input("method %q: placeholder index %v outside the target prompt of %d tokens", name, ph, len(toks))
		}
		m.Target = append(prefixBOS, toks...)
		m.Placeholder = len(prefixBOS) + idx
	}
	switch tl := sp.TargetLayer.(type) {
	case nil:
	case string:
		switch tl {
		case "same", "last", "all":
			m.TargetMode = tl
		default:
			return m, nil, errs.Input("method %q: target_layer %q (want same, last, all or a layer index)", name, tl)
		}
	default:
		l, ok := toInt(tl)
		if !ok {
			return m, nil, errs.Input("method %q: target_layer must be same, last, all or a layer index, got %T", name, tl)
		}
		m.TargetMode, m.TargetLayer = patchscope.TargetFixed, l
	}
	info["target_tokens"] = m.Target
	info["placeholder"] = m.Placeholder
	info["target_mode"] = m.TargetMode
	info["target_layer"] = m.TargetLayer
	if sp.Target != "" {
		info["target"] = sp.Target
	}
	return m, info, nil
}

func toInt(v any) (int, bool) {
	switch x := v.(type) {
	case int8:
		return int(x), true
	case int16:
		return int(x), true
	case int32:
		return int(x), true
	case int64:
		return int(x), true
	case int:
		return x, true
	case uint8:
		return int(x), true
	case uint16:
		return int(x), true
	case uint32:
		return int(x), true
	case uint64:
		return int(x), true
	}
	return 0, false
}

func (s *Session) prompts(texts []string, tokens [][]int, prependBOS, truncate bool) ([][]int, int, error) {
	return s.tokenizePrompts(texts, tokens, prependBOS, truncate, false)
}

// tokenizePrompts is prompts; with allowEmpty an empty text or token list is kept (as [BOS]
// with prependBOS, else as no tokens) instead of refused.
func (s *Session) tokenizePrompts(texts []string, tokens [][]int, prependBOS, truncate, allowEmpty bool) ([][]int, int, error) {
	if texts != nil && tokens != nil {
		return nil, 0, errs.Input("give prompts as texts or as tokens, not both")
	}
	var bos []int
	if prependBOS {
		id, err := s.bos()
		if err != nil {
			return nil, 0, err
		}
		bos = []int{id}
	}
	var out [][]int
	if texts != nil {
		tk, err := s.tok()
		if err != nil {
			return nil, 0, err
		}
		for i, t := range texts {
			if t == "" && !allowEmpty {
				return nil, 0, errs.Input("prompt %d is an empty string", i)
			}
			out = append(out, append(slices.Clone(bos), tk.Encode(t)...))
		}
	} else {
		for i, q := range tokens {
			if len(q) == 0 && !allowEmpty {
				return nil, 0, errs.Input("prompt %d has no tokens", i)
			}
			out = append(out, append(slices.Clone(bos), q...))
		}
	}
	if len(out) == 0 {
		return nil, 0, errs.Input("no prompts given")
	}
	n := 0
	ctx := s.Model.Cfg.NPositions
	for i := range out {
		if len(out[i]) > ctx {
			if !truncate {
				return nil, 0, errs.Input("prompt %d has %d tokens, more than the model's context of %d (pass truncate=True to cut it)", i, len(out[i]), ctx)
			}
			out[i] = out[i][:ctx]
			n++
		}
	}
	return out, n, nil
}

func (s *Session) evaluate(ctx context.Context, req []byte, progress func(int64, int64)) (any, error) {
	var r EvalRequest
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	// the settings first: a bad one is refused before any prompt is tokenized
	var preset *data.Preset
	if r.Preset != "" {
		p, err := data.PresetByName(r.Preset)
		if err != nil {
			return nil, errs.Input("preset: %v", err)
		}
		preset = &p
	}
	seed, err := parseSeed(r.Seed, preset)
	if err != nil {
		return nil, err
	}
	bos := r.PrependBOS != nil && *r.PrependBOS
	if r.PrependBOS == nil && preset != nil {
		bos = preset.PrependBOS
	}
	posArg := r.Positions
	if posArg == nil && preset != nil {
		posArg = preset.Positions
	}
	pos, err := parsePositions(posArg, max(len(r.Texts), len(r.Tokens)), len(r.Layers), s.Model.Cfg.NLayer)
	if err != nil {
		return nil, err
	}
	if bos {
		pos.Start = 1 // paper positions never draw the BOS token
	}
	prompts, nTrunc, err := s.tokenizePrompts(r.Texts, r.Tokens, bos, r.Truncate, true)
	if err != nil {
		return nil, err
	}
	if len(r.Methods) == 0 {
		return nil, errs.Input("no methods given")
	}
	var methods []patchscope.Method
	defer func() { closeMethods(methods) }()
	var infos []map[string]any
	for _, sp := range r.Methods {
		m, info, err := s.resolveMethod(sp, bos)
		if err != nil {
			return nil, err
		}
		methods = append(methods, m)
		infos = append(infos, info)
	}
	er := patchscope.Request{
		Prompts: prompts, Layers: r.Layers, Methods: methods, Positions: pos, Seed: seed,
		BatchTokens: r.BatchTokens, PatchRows: r.PatchRows, ChunkPrompts: r.ChunkPrompts, Progress: progress,
		Deterministic: r.Deterministic,
	}
	var res *patchscope.Result
	tf32, err := s.withTF32(r.TF32, func() error {
		var err error
		res, err = patchscope.EvaluateOn(ctx, s.replicas(), er)
		return err
	})
	if err != nil {
		return nil, err
	}
	n, nl := int64(res.NPrompts), int64(len(res.Layers))
	var outMethods []map[string]any
	for i, mr := range res.Methods {
		shape := []int64{n, nl}
		if mr.TargetLayers != nil {
			shape = append(shape, int64(len(mr.TargetLayers)))
		}
		info := infos[i]
		info["target_layers"] = mr.TargetLayers
		info["arrays"] = map[string]Array{
			"prec1":           F32Array(mr.Prec1, shape...),
			"surprisal":       F32Array(mr.Surprisal, shape...),
			"paper_surprisal": F32Array(mr.PaperSurprisal, shape...),
			"patched_top1":    I64Array(mr.PatchedTop1, shape...),
			"position":        I64Array(mr.Position, n, nl),
			"source_top1":     I64Array(mr.SourceTop1, n, nl),
		}
		outMethods = append(outMethods, info)
	}
	lengths := make([]int64, len(prompts))
	for i, p := range prompts {
		lengths[i] = int64(len(p))
	}
	digest := patchscope.CorpusDigest(prompts)
	var presetOut any
	if preset != nil {
		presetOut = preset.Name
	}
	st := res.Stats
	return map[string]any{
		"n_prompts": res.NPrompts, "layers": res.Layers, "methods": outMethods,
		"prompt_lengths": I64Array(lengths, n), "n_truncated": nTrunc,
		"skipped":   map[string]any{"empty": nonNil(res.SkippedEmpty), "too_short": nonNil(res.SkippedShort)},
		"positions": pos.Mode, "seed": seed, "prepend_bos": bos, "preset": presetOut,
		"corpus_sha256": hex.EncodeToString(digest[:]),
		"tf32":          tf32,
		"stats": map[string]any{
			"source_batches": st.SourceBatches, "patch_batches": st.PatchBatches,
			"source_tokens": st.SourceTokens, "patched_rows": st.PatchedRows,
			"oom_retries": st.Retries, "seconds": st.Seconds,
			"source_seconds": st.SourceSeconds, "patch_seconds": st.PatchSeconds,
			"batch_tokens": st.BatchTokens, "patch_rows": st.PatchRows, "chunk_prompts": st.ChunkPrompts,
			"patch_rows_final": st.PatchRowsFinal, "source_batch_cap": st.SourceBatchCap,
		},
	}, nil
}

func nonNil(v []int) []int {
	if v == nil {
		return []int{}
	}
	return v
}

// parseSeed is the seed field: an integer within int64 (msgpack may carry it unsigned), or the
// preset's seed (else 0) when left out.
func parseSeed(v any, preset *data.Preset) (int64, error) {
	switch x := v.(type) {
	case nil:
		if preset != nil {
			return preset.Seed, nil
		}
		return 0, nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, errs.Input("seed %d is outside the int64 range [-2^63, 2^63-1]", x)
		}
		return int64(x), nil
	case uint8, uint16, uint32, int, int8, int16, int32, int64:
		i, _ := toInt(x)
		return int64(i), nil
	}
	return 0, errs.Input("seed must be an integer, got %T", v)
}

// tf32Mu serialises the calls that change the process-wide TF32 flags.
var tf32Mu sync.Mutex

// withTF32 runs f with CUDA's TF32 flags (cuBLAS and cuDNN) set to *want on a CUDA model, and
// restores them after; want nil, or a CPU model, leaves them alone. It returns the flags in
// effect during f, {"cublas": bool, "cudnn": bool}.
func (s *Session) withTF32(want *bool, f func() error) (map[string]any, error) {
	if want != nil && s.Model.Device.Type == torch.DevCUDA {
		tf32Mu.Lock()
		defer tf32Mu.Unlock()
		cublas, cudnn, err := torch.TF32()
		if err != nil {
			return nil, err
		}
		if err := torch.SetTF32(*want, *want); err != nil {
			return nil, err
		}
		defer torch.SetTF32(cublas, cudnn)
	}
	cublas, cudnn, err := torch.TF32()
	if err != nil {
		return nil, err
	}
	return map[string]any{"cublas": cublas, "cudnn": cudnn}, f()
}

func parsePositions(v any, n, nLayersReq, nLayer int) (patchscope.Positions, error) {
	switch x := v.(type) {
	case nil:
		return patchscope.Positions{Mode: patchscope.PosRandom}, nil
	case string:
		if slices.Contains(patchscope.PositionModes, x) {
			return patchscope.Positions{Mode: x}, nil
		}
		return patchscope.Positions{}, errs.Input("positions: unknown mode %q (known: %s, or an array of positions)", x, strings.Join(patchscope.PositionModes, ", "))
	case map[string]any:
		b, _ := msgpack.Marshal(x)
		var a Array
		if err := msgpack.Unmarshal(b, &a); err != nil {
			return patchscope.Positions{}, errs.Input("positions: %v", err)
		}
		vals, err := a.Ints()
		if err != nil {
			return patchscope.Positions{}, errs.Input("positions: %v", err)
		}
		switch len(a.Shape) {
		case 1:
			if a.Shape[0] != int64(n) {
				return patchscope.Positions{}, errs.Input("positions: %d given for %d prompts", a.Shape[0], n)
			}
			return patchscope.Positions{Mode: patchscope.PosGiven, PerPrompt: vals}, nil
		case 2:
			nl := nLayersReq
			if nl == 0 {
				nl = nLayer
			}
			if a.Shape[0] != int64(n) || a.Shape[1] != int64(nl) {
				return patchscope.Positions{}, errs.Input("positions: shape %v, want [%d, %d] (prompts, layers)", a.Shape, n, nl)
			}
			rows := make([][]int, n)
			for i := range rows {
				rows[i] = vals[i*nl : (i+1)*nl]
			}
			return patchscope.Positions{Mode: patchscope.PosGiven, PerPromptLayer: rows}, nil
		}
		return patchscope.Positions{}, errs.Input("positions: array of %d dimensions (want 1 or 2)", len(a.Shape))
	}
	return patchscope.Positions{}, errs.Input("positions: unsupported type %T", v)
}

func (s *Session) inspect(ctx context.Context, req []byte, _ func(int64, int64)) (any, error) {
	var r struct {
		Text       string       `msgpack:"text"`
		Tokens     []int        `msgpack:"tokens"`
		PrependBOS bool         `msgpack:"prepend_bos"`
		Methods    []MethodSpec `msgpack:"methods"`
		Position   *int         `msgpack:"position"`
		Layers     []int        `msgpack:"layers"`
		K          int          `msgpack:"k"`
	}
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	var texts []string
	var toks [][]int
	if r.Tokens != nil {
		toks = [][]int{r.Tokens}
	} else {
		texts = []string{r.Text}
	}
	prompts, _, err := s.prompts(texts, toks, r.PrependBOS, false)
	if err != nil {
		return nil, err
	}
	prompt := prompts[0]
	pos := len(prompt) - 1
	if r.Position != nil {
		pos = *r.Position
		if pos < 0 {
			pos += len(prompt)
		}
		if pos < 0 || pos >= len(prompt) {
			return nil, errs.Input("position %d out of range for a prompt of %d tokens", *r.Position, len(prompt))
		}
	}
	var methods []patchscope.Method
	defer func() { closeMethods(methods) }()
	for _, sp := range r.Methods {
		m, _, err := s.resolveMethod(sp, r.PrependBOS)
		if err != nil {
			return nil, err
		}
		methods = append(methods, m)
	}
	if r.K == 0 {
		r.K = 5
	}
	ins, err := patchscope.Inspect(ctx, s.Model, prompt, pos, r.Layers, methods, r.K)
	if err != nil {
		return nil, err
	}
	type topk struct {
		IDs      []int64   `msgpack:"ids"`
		LogProbs []float32 `msgpack:"logprobs"`
	}
	out := map[string][]topk{}
	for name, per := range ins.Methods {
		for _, t := range per {
			out[name] = append(out[name], topk{t.IDs, t.LogProbs})
		}
	}
	return map[string]any{
		"position": ins.Position, "layers": ins.Layers, "tokens": prompt,
		"source": topk{ins.Source.IDs, ins.Source.LogProbs}, "methods": out,
	}, nil
}

// loadData reads a corpus file, optionally through a preset.
func loadData(req []byte) (any, error) {
	var r struct {
		Path    string `msgpack:"path"`
		Preset  string `msgpack:"preset"`
		MaxDocs int    `msgpack:"max_docs"`
	}
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	var docs []data.Doc
	var err error
	var preset map[string]any
	if r.Preset != "" {
		p, perr := data.PresetByName(r.Preset)
		if perr != nil {
			return nil, errs.AsInput(perr)
		}
		docs, err = p.Apply(r.Path)
		preset = map[string]any{"name": p.Name, "prepend_bos": p.PrependBOS, "seed": p.Seed, "positions": p.Positions}
	} else {
		docs, err = readAll(r.Path, r.MaxDocs)
	}
	if err != nil {
		if Status(err) == StatusRuntime {
			return nil, errs.AsInput(err)
		}
		return nil, err
	}
	texts := make([]string, len(docs))
	idx := make([]int64, len(docs))
	for i, d := range docs {
		texts[i], idx[i] = d.Text, int64(d.Index)
	}
	return map[string]any{"texts": texts, "indices": I64Array(idx, int64(len(idx))), "preset": preset}, nil
}

func readAll(path string, max int) ([]data.Doc, error) {
	rd, err := data.Open(path)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var docs []data.Doc
	for max <= 0 || len(docs) < max {
		d, err := rd.Next()
		if err != nil {
			if isEOF(err) {
				break
			}
			return nil, err
		}
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		return nil, errs.Input("%s: no documents", path)
	}
	return docs, nil
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
