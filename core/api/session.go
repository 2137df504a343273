package api

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/simplescope/simplescope/core/batch"
	"github.com/simplescope/simplescope/core/errs"
	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/tokenizer"
	"github.com/simplescope/simplescope/core/torch"
)

// Session is a loaded model with its tokenizer. Its methods are safe for concurrent use.
type Session struct {
	Model *gptj.Model
	// Replicas are the model on every device it was loaded on (Replicas[0] is Model):
	// evaluate, patch and generate split their work over them.
	Replicas []*gptj.Model
	Tok      *tokenizer.Tokenizer // nil when the model folder has no tokenizer
	TokErr   error

	// Calls hold mu for reading; Close takes it for writing, so it waits for calls in flight
	// and later calls get "the model is closed" instead of touching freed tensors.
	mu     sync.RWMutex
	closed bool
}

// ParseDevices reads a device list: one device ("cpu", "cuda", "cuda:N") or several separated
// by commas ("cuda:0,cuda:1"), one model replica each.
func ParseDevices(s string) ([]torch.Device, error) {
	var devs []torch.Device
	for _, part := range strings.Split(s, ",") {
		d, err := torch.ParseDevice(part)
		if err != nil {
			return nil, err
		}
		devs = append(devs, d)
	}
	for i := 1; i < len(devs); i++ {
		if devs[i].Type != devs[0].Type {
			return nil, fmt.Errorf("devices %q: replicas must all be CPU or all CUDA", s)
		}
	}
	return devs, nil
}

// Open loads the model in path with dtype on device — or on each device of a comma-separated
// list (ParseDevices), one replica each — and its tokenizer when present.
func Open(path, device, dtype string) (*Session, error) {
	devs, err := ParseDevices(device)
	if err != nil {
		return nil, errs.AsInput(err)
	}
	dt, err := torch.ParseDType(dtype)
	if err != nil {
		return nil, errs.AsInput(err)
	}
	if dt != torch.Float32 && dt != torch.Float16 && dt != torch.BFloat16 {
		return nil, errs.Input("dtype %s not supported (want float32, float16 or bfloat16)", dt)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("model folder %s: %w", path, err)
	}
	if !st.IsDir() {
		return nil, errs.Input("model path %s is not a folder", path)
	}
	for _, dev := range devs {
		if err := torch.CheckDevice(dev); err != nil {
			return nil, errs.AsInput(err)
		}
	}
	s := &Session{}
	for _, dev := range devs {
		m, err := gptj.Load(path, dt, dev)
		if err != nil {
			for _, r := range s.Replicas {
				r.Close()
			}
			if Status(err) == StatusRuntime {
				// a broken config, a missing or misshapen tensor, a corrupt file: the input's fault
				return nil, errs.AsInput(err)
			}
			return nil, err
		}
		s.Replicas = append(s.Replicas, m)
	}
	s.Model = s.Replicas[0]
	s.Tok, s.TokErr = tokenizer.Load(tokenizerDir(path))
	return s, nil
}

// replicas is the model on every device it was loaded on (a Session made without Open: Model).
func (s *Session) replicas() []*gptj.Model {
	if len(s.Replicas) == 0 {
		return []*gptj.Model{s.Model}
	}
	return s.Replicas
}

// tokenizerDir is path, or the snapshot folder a HF cache repo folder points to (the weights
// package resolves the same).
func tokenizerDir(path string) string {
	if _, err := os.Stat(filepath.Join(path, "tokenizer.json")); err == nil {
		return path
	}
	if ref, err := os.ReadFile(filepath.Join(path, "refs", "main")); err == nil {
		return filepath.Join(path, "snapshots", strings.TrimSpace(string(ref)))
	}
	return path
}

// Close frees the model.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		for _, m := range s.replicas() {
			m.Close()
		}
	}
}

func (s *Session) tok() (*tokenizer.Tokenizer, error) {
	if s.Tok == nil {
		return nil, errs.Input("this model has no usable tokenizer (%v): pass token ids instead of text", s.TokErr)
	}
	return s.Tok, nil
}

// Handler serves one method.
type Handler func(s *Session, ctx context.Context, req []byte, progress func(done, total int64)) (any, error)

var handlers = map[string]Handler{
	"config":         (*Session).config,
	"tokenize":       (*Session).tokenize,
	"decode":         (*Session).decode,
	"token_strings":  (*Session).tokenStrings,
	"run_with_cache": (*Session).runWithCache,
	"evaluate":       (*Session).evaluate,
	"inspect":        (*Session).inspect,
	"hidden_states":  (*Session).hiddenStates,
	"patch":          (*Session).patch,
	"generate":       (*Session).generate,
	"load_data": func(_ *Session, _ context.Context, req []byte, _ func(int64, int64)) (any, error) {
		return loadData(req)
	},
	debugPanic: func(*Session, context.Context, []byte, func(int64, int64)) (any, error) {
		panic("deliberate panic requested by debug.panic")
	},
}

// debugPanic panics on purpose (tests of the panic path). It is served only while the
// environment variable DebugPanicEnv is "1" at the time of the call.
const debugPanic = "debug.panic"

// DebugPanicEnv names the environment variable that turns on the debug.panic method.
const DebugPanicEnv = "SIMPLESCOPE_DEBUG_PANIC"

// Getenv reads an environment variable when a call needs it. capi replaces it with the C
// library's getenv: in a c-shared library os.Getenv sees the environment as it was when the
// library loaded, and a test (Python's monkeypatch.setenv) may set the variable later.
var Getenv = os.Getenv

// served reports whether method is served now.
func served(method string) bool {
	_, ok := handlers[method]
	return ok && (method != debugPanic || Getenv(DebugPanicEnv) == "1")
}

// Methods lists the methods served now, sorted (debug.panic only while DebugPanicEnv is "1").
// docs/capi.md documents each of them (TestCAPIDocs).
func Methods() []string {
	var out []string
	for k := range handlers {
		if served(k) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Call runs method with a msgpack request and returns the msgpack result. s may be nil for
// methods that need no model (load_data, debug.panic).
func Call(ctx context.Context, s *Session, method string, req []byte, progress func(done, total int64)) ([]byte, error) {
	h, ok := handlers[method]
	if !ok {
		return nil, errs.Input("unknown method %q", method)
	}
	if !served(method) {
		return nil, errs.Input("unknown method %q (served only while %s=1)", method, DebugPanicEnv)
	}
	if s == nil && method != "load_data" && method != debugPanic {
		return nil, errs.Input("method %q needs a model", method)
	}
	if s != nil {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if s.closed {
			return nil, errs.Input("the model is closed")
		}
	}
	// The caller's torch thread count, applied on this OS thread: OpenMP keeps the count per
	// thread, and GEMM results depend on it in the last bits, so without this the same request
	// could give slightly different numbers depending on which thread serves it.
	var th struct {
		NumThreads     int     `msgpack:"num_threads"`
		MemoryFraction float64 `msgpack:"memory_fraction"`
	}
	if err := decode(req, &th); err != nil {
		return nil, err
	}
	if th.MemoryFraction < 0 || th.MemoryFraction > 1 {
		return nil, errs.Input("memory_fraction %v out of range [0, 1]", th.MemoryFraction)
	}
	// the caller's torch.cuda.set_per_process_memory_fraction, for the batch budgets when the
	// shim cannot read the allocator's own
	ctx = batch.WithMemoryFraction(ctx, th.MemoryFraction)
	if th.NumThreads != 0 {
		// bounded: the count is process-wide state, and OpenMP aborts the process when it cannot
		// create the threads asked for
		if limit := 2 * runtime.NumCPU(); th.NumThreads < 1 || th.NumThreads > limit {
			return nil, errs.Input("num_threads %d out of range [1, %d]", th.NumThreads, limit)
		}
		if th.NumThreads != torch.NumThreads() {
			if err := torch.SetNumThreads(th.NumThreads); err != nil {
				return nil, errs.AsInput(err)
			}
		}
	}
	res, err := h(s, ctx, req, progress)
	if err != nil {
		return nil, err
	}
	return msgpack.Marshal(res)
}

func decode(req []byte, v any) (err error) {
	if len(req) == 0 {
		return nil
	}
	// msgpack v5.4.1 panics on some malformed requests (a repeated key of an interface field:
	// "reflect.Value.SetInt using unaddressable value"); bad input must be an input error.
	defer func() {
		if p := recover(); p != nil {
			err = errs.Input("bad request: %v", p)
		}
	}()
	if err := checkLengths(req); err != nil {
		return errs.Input("bad request: %v", err)
	}
	if err := msgpack.Unmarshal(req, v); err != nil {
		return errs.Input("bad request: %v", err)
	}
	return nil
}

func (s *Session) config(context.Context, []byte, func(int64, int64)) (any, error) {
	c := s.Model.Cfg
	out := map[string]any{
		"model_type": c.ModelType, "n_embd": c.NEmbd, "n_layer": c.NLayer, "n_head": c.NHead,
		"n_key_value_heads": c.KVHeads(), "sliding_window": windows(c),
		"rotary_dim": c.RotaryDim, "vocab_size": c.VocabSize, "n_positions": c.NPositions,
		"n_inner": c.NInner, "layer_norm_epsilon": c.LayerNormEps, "activation_function": c.Activation,
		"bos_token_id": c.BOS, "eos_token_id": c.EOS, "d_head": c.HeadDim(),
		"dtype": s.Model.DType.String(), "device": s.Model.Device.String(), "devices": s.devices(), "path": s.Model.Dir,
		"has_tokenizer": s.Tok != nil,
	}
	return out, nil
}

// devices names the device of every replica.
func (s *Session) devices() []string {
	var out []string
	for _, m := range s.replicas() {
		out = append(out, m.Device.String())
	}
	return out
}

// windows is the per-block sliding window (0: full attention), or nil when no block has one.
func windows(c gptj.Config) []int {
	if !c.Windowed() {
		return nil
	}
	w := make([]int, c.NLayer)
	for l := range w {
		w[l] = c.Window(l)
	}
	return w
}

// bos is the token prepend_bos adds: the BOS the tokenizer names (tokenizer_config.json,
// special_tokens_map.json, the post-processor's template); a tokenizer that names none is an
// input error saying why (Qwen2's sets bos_token to null). Without a tokenizer (token ids given
// directly) it is config.json's bos_token_id.
func (s *Session) bos() (int, error) {
	if s.Tok != nil {
		id, err := s.Tok.BOSToken()
		if err != nil {
			return -1, errs.Input("prepend_bos: %v", err)
		}
		return id, nil
	}
	// no tokenizer (token ids given directly): the model config's bos_token_id
	if c := s.Model.Cfg; c.BOS >= 0 && c.BOS < c.VocabSize {
		return c.BOS, nil
	}
	return -1, errs.Input("prepend_bos: the model has no tokenizer and its config.json names no bos_token_id")
}

func (s *Session) tokenize(_ context.Context, req []byte, _ func(int64, int64)) (any, error) {
	var r struct {
		Texts      []string `msgpack:"texts"`
		PrependBOS bool     `msgpack:"prepend_bos"`
	}
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	tk, err := s.tok()
	if err != nil {
		return nil, err
	}
	var prefix []int
	if r.PrependBOS {
		bos, err := s.bos()
		if err != nil {
			return nil, err
		}
		prefix = []int{bos}
	}
	ids := make([][]int, len(r.Texts))
	for i, t := range r.Texts {
		ids[i] = append(append(make([]int, 0, len(prefix)+len(t)), prefix...), tk.Encode(t)...) // [] for ""
	}
	return map[string]any{"ids": ids}, nil
}

func (s *Session) decode(_ context.Context, req []byte, _ func(int64, int64)) (any, error) {
	var r struct {
		IDs [][]int `msgpack:"ids"`
	}
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	tk, err := s.tok()
	if err != nil {
		return nil, err
	}
	texts := make([]string, len(r.IDs))
	for i, ids := range r.IDs {
		if texts[i], err = tk.DecodeText(ids); err != nil {
			return nil, errs.AsInput(err)
		}
	}
	return map[string]any{"texts": texts}, nil
}

func (s *Session) tokenStrings(_ context.Context, req []byte, _ func(int64, int64)) (any, error) {
	var r struct {
		IDs []int `msgpack:"ids"`
	}
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	tk, err := s.tok()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(r.IDs))
	for i, id := range r.IDs {
		if id < 0 || id >= s.Model.Cfg.VocabSize {
			return nil, errs.Input("token id %d out of range [0, %d)", id, s.Model.Cfg.VocabSize)
		}
		out[i] = tk.TokenString(id)
	}
	return map[string]any{"tokens": out}, nil
}

func (s *Session) runWithCache(ctx context.Context, req []byte, _ func(int64, int64)) (any, error) {
	var r struct {
		Tokens Tokens   `msgpack:"tokens"` // lists of ids, or an integer tensor argument
		Names  []string `msgpack:"names"`
		Arrays bool     `msgpack:"arrays"` // msgpack bin copies instead of tensor handles
	}
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	seqs, err := s.tokenLists(r.Tokens, "tokens")
	if err != nil {
		return nil, err
	}
	if len(seqs) == 0 {
		return nil, errs.Input("no token sequences given")
	}
	L := s.Model.Cfg.NLayer
	layers := map[int]bool{}
	if r.Names == nil {
		for l := -1; l < L; l++ {
			layers[l] = true
		}
	}
	for _, n := range r.Names {
		l, err := ParseSite(n, L)
		if err != nil {
			return nil, err
		}
		layers[l] = true
	}
	for i, q := range seqs {
		if len(q) == 0 {
			return nil, errs.Input("token sequence %d is empty", i)
		}
	}
	out, err := s.Model.Forward(ctx, seqs, gptj.Request{Full: true})
	if err != nil {
		return nil, err
	}
	defer out.Close()
	lengths := make([]int64, len(seqs))
	for i, q := range seqs {
		lengths[i] = int64(len(q))
	}
	if !r.Arrays {
		return cacheTensors(out, layers, lengths), nil
	}
	B, T := int64(len(seqs)), int64(out.T)
	logits, err := out.Logits.Float32s()
	if err != nil {
		return nil, err
	}
	cache := map[string]Array{}
	for l := range layers {
		v, err := out.Resid[l].Float32s()
		if err != nil {
			return nil, err
		}
		cache[SiteName(l)] = F32Array(v, B, T, int64(s.Model.Cfg.NEmbd))
	}
	return map[string]any{
		"logits":  F32Array(logits, B, T, int64(s.Model.Cfg.VocabSize)),
		"cache":   cache,
		"lengths": I64Array(lengths, B),
	}, nil
}

// SiteName is the TransformerLens name of layer l's residual (-1 = hook_embed).
func SiteName(l int) string {
	if l < 0 {
		return "hook_embed"
	}
	return fmt.Sprintf("blocks.%d.hook_resid_post", l)
}

// ParseSite parses hook_embed or blocks.{l}.hook_resid_post.
func ParseSite(name string, nLayer int) (int, error) {
	if name == "hook_embed" {
		return -1, nil
	}
	var l int
	var rest string
	if n, _ := fmt.Sscanf(name, "blocks.%d.%s", &l, &rest); n == 2 && rest == "hook_resid_post" {
		if l < 0 || l >= nLayer {
			return 0, errs.Input("site %q: layer %d out of range [0, %d)", name, l, nLayer)
		}
		return l, nil
	}
	return 0, errs.Input("unknown site %q (known: hook_embed, blocks.{l}.hook_resid_post)", name)
}
