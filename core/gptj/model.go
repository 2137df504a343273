package gptj

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sort"
	"strings"
	"sync"

	"github.com/simplescope/simplescope/core/config"
	"github.com/simplescope/simplescope/core/torch"
	"github.com/simplescope/simplescope/core/weights"
)

// Config is the part of a decoder's config.json the forward pass needs. The first fields are
// GPT-J's names (n_embd is every family's hidden size, n_inner its MLP width, …); the rest
// describe what other families add.
type Config struct {
	NEmbd, NLayer, NHead, RotaryDim, VocabSize, NPositions, NInner int
	LayerNormEps                                                   float64 // the norms' epsilon (layer or RMS)
	Activation                                                     string
	BOS, EOS                                                       int
	Tied                                                           bool // tie_word_embeddings: the head shares the token embedding

	ModelType string
	NKVHead   int // key/value heads: NHead, or fewer with grouped-query attention
	DHead     int // head dimension; 0 means NEmbd / NHead
	RopeTheta float64
	Rope      config.RopeScaling

	QKVBias, OutBias, MLPBias bool
	// Windows[l] is block l's sliding attention window (0 or missing: full attention).
	Windows []int
	// AttnScale[l] multiplies block l's attention scale 1/sqrt(head_dim) (nil: 1 everywhere).
	AttnScale []float64

	Family Family
}

// maxPositions bounds n_positions: the rotary table is n_positions × rotary_dim.
const maxPositions = 1 << 20

// HeadDim is the dimension of one attention head.
func (c Config) HeadDim() int {
	if c.DHead > 0 {
		return c.DHead
	}
	if c.NHead == 0 {
		return 0
	}
	return c.NEmbd / c.NHead
}

// KVHeads is the number of key/value heads.
func (c Config) KVHeads() int {
	if c.NKVHead > 0 {
		return c.NKVHead
	}
	return c.NHead
}

// Window is block l's sliding attention window, 0 for full attention.
func (c Config) Window(l int) int {
	if l < 0 || l >= len(c.Windows) {
		return 0
	}
	return c.Windows[l]
}

// Validate checks the shapes fit together.
func (c Config) Validate() error {
	switch {
	case c.NEmbd <= 0 || c.NLayer <= 0 || c.NHead <= 0 || c.VocabSize <= 0 || c.NPositions <= 0 || c.NInner <= 0:
		return fmt.Errorf("config: hidden size, layers, heads, MLP width, vocab_size and context length must be positive (got %d, %d, %d, %d, %d, %d)", c.NEmbd, c.NLayer, c.NHead, c.NInner, c.VocabSize, c.NPositions)
	case c.NPositions > maxPositions:
		return fmt.Errorf("config: context length %d is implausibly large (at most %d supported)", c.NPositions, maxPositions)
	case c.DHead == 0 && c.NEmbd%c.NHead != 0:
		return fmt.Errorf("config: hidden size %d is not divisible by the head count %d", c.NEmbd, c.NHead)
	case c.HeadDim() <= 0:
		return fmt.Errorf("config: head dimension %d must be positive", c.HeadDim())
	case c.KVHeads() <= 0 || c.NHead%c.KVHeads() != 0:
		return fmt.Errorf("config: %d attention heads are not a multiple of %d key/value heads", c.NHead, c.KVHeads())
	case !activations[c.Activation]:
		return fmt.Errorf("config: activation %q is not supported (want %s)", c.Activation, strings.Join(sortedKeys(activations), ", "))
	case !(c.LayerNormEps > 0):
		return fmt.Errorf("config: norm epsilon %g must be positive", c.LayerNormEps)
	case c.Family.QKV == QKVFusedPerHead && c.KVHeads() != c.NHead:
		return fmt.Errorf("config: a fused per-head QKV projection needs as many key/value heads as heads (%d, %d)", c.KVHeads(), c.NHead)
	case c.AttnScale != nil && len(c.AttnScale) != c.NLayer:
		return fmt.Errorf("config: %d attention scales for %d layers", len(c.AttnScale), c.NLayer)
	}
	if c.Family.Rotary == RotaryNone {
		if c.RotaryDim != 0 {
			return fmt.Errorf("config: rotary dimension %d for a family with learned positions", c.RotaryDim)
		}
	} else if c.RotaryDim <= 0 || c.RotaryDim > c.HeadDim() || c.RotaryDim%2 != 0 {
		return fmt.Errorf("config: rotary dimension %d must be even and in 1..head_dim (%d)", c.RotaryDim, c.HeadDim())
	}
	for l := range c.NLayer {
		if c.Window(l) < 0 {
			return fmt.Errorf("config: block %d: sliding window %d is negative", l, c.Window(l))
		}
	}
	return nil
}

// Windowed reports whether any block has a sliding window (its passes then need positions:
// Pass.Pos and Pass.PastPos).
func (c Config) Windowed() bool { return c.windowed(0, c.NLayer) }

// windowed reports whether any block in [start, end) has a sliding window.
func (c Config) windowed(start, end int) bool {
	for l := start; l < end; l++ {
		if c.Window(l) > 0 {
			return true
		}
	}
	return false
}

// block holds one transformer block's weights. Names (GPT-J's in comments) come from the
// family's Names; a weight a family or config does not have is nil.
type block struct {
	ln1W, ln1B     *torch.Tensor // h.{i}.ln_1.weight/bias (C); the bias is nil for an RMSNorm
	ln2W, ln2B     *torch.Tensor // the second norm (NeoX, GPT-2, Llama …) or nil
	q, k, v, o     *torch.Tensor // h.{i}.attn.{q,k,v,out}_proj.weight (H·D | Hkv·D, C), o (C, H·D); nil when fused
	qB, kB, vB, oB *torch.Tensor // their biases or nil
	qkv, qkvB      *torch.Tensor // a fused projection (3·H·D, C) and its bias
	qNorm, kNorm   *torch.Tensor // per-head RMSNorm weights (D) (Qwen3)
	fcInW, fcInB   *torch.Tensor // h.{i}.mlp.fc_in (I, C), (I): the MLP's up projection
	gateW, gateB   *torch.Tensor // the gated MLP's gate projection (I, C)
	fcOutW, fcOutB *torch.Tensor // h.{i}.mlp.fc_out (C, I), (C): the down projection
}

// Model is a loaded decoder (GPT-J or another family, Cfg.Family). Its methods are safe for
// concurrent use (weights are read-only).
type Model struct {
	Cfg    Config
	DType  torch.DType
	Device torch.Device
	Dir    string

	wte        *torch.Tensor // transformer.wte.weight (V, C)
	wpe        *torch.Tensor // learned positions (n_positions, C) or nil
	lnfW, lnfB *torch.Tensor // transformer.ln_f (C); lnfB nil for an RMSNorm
	headW      *torch.Tensor // lm_head.weight (V, C); wte itself when tied
	headB      *torch.Tensor // lm_head.bias (V) or nil
	blocks     []block
	sincos     *torch.Tensor // (n_positions, rotary_dim): [sin | cos], model dtype; nil without rotary

	closeOnce sync.Once
}

// Close frees all weights.
func (m *Model) Close() {
	m.closeOnce.Do(func() {
		for _, t := range m.all() {
			t.Close() // a tied head is wte itself: the second Close is a no-op
		}
	})
}

func (m *Model) all() []*torch.Tensor {
	ts := []*torch.Tensor{m.wte, m.wpe, m.lnfW, m.lnfB, m.headW, m.headB, m.sincos}
	for _, b := range m.blocks {
		ts = append(ts, b.ln1W, b.ln1B, b.ln2W, b.ln2B, b.q, b.k, b.v, b.o, b.qB, b.kB, b.vB, b.oB, b.qkv, b.qkvB,
			b.qNorm, b.kNorm, b.fcInW, b.fcInB, b.gateW, b.gateB, b.fcOutW, b.fcOutB)
	}
	return ts
}

// ConfigFromFile converts the checkpoint's config.json (any supported family) to Config.
func ConfigFromFile(dir string) (Config, error) {
	c, err := config.ReadDecoder(dir)
	if err != nil {
		return Config{}, err
	}
	return FromDecoder(c)
}

// FromDecoder converts a parsed config.json to Config, choosing the family by model_type.
func FromDecoder(c config.Decoder) (Config, error) {
	fam, err := FamilyOf(c.ModelType)
	if err != nil {
		return Config{}, err
	}
	if fam.Residual == ParallelTwoNorm && !c.ParallelResidual {
		fam.Residual = Sequential // NeoX with use_parallel_residual false
	}
	cfg := Config{
		NEmbd: c.Hidden, NLayer: c.Layers, NHead: c.Heads, RotaryDim: c.RotaryDim, VocabSize: c.Vocab,
		NPositions: c.Positions, NInner: c.Inner, LayerNormEps: c.NormEps, Activation: c.Activation,
		BOS: c.BOS, EOS: c.EOS, Tied: c.Tied,
		ModelType: c.ModelType, NKVHead: c.KVHeads, RopeTheta: c.RopeTheta, Rope: c.Rope,
		QKVBias: c.QKVBias, OutBias: c.OutBias, MLPBias: c.MLPBias,
		Windows: append([]int(nil), c.Windows...), AttnScale: append([]float64(nil), c.AttnScale...), Family: fam,
	}
	cfg.DHead = c.HeadDim
	if len(cfg.AttnScale) == 0 {
		cfg.AttnScale = nil
	}
	if cfg.Rope.Type == "" {
		cfg.Rope.Type = "default"
	}
	return cfg, cfg.Validate()
}

func torchDType(d weights.DType) (torch.DType, error) {
	switch d {
	case weights.F32:
		return torch.Float32, nil
	case weights.F16:
		return torch.Float16, nil
	case weights.BF16:
		return torch.BFloat16, nil
	case weights.F64:
		return torch.Float64, nil
	}
	return 0, fmt.Errorf("unsupported stored dtype %s", d)
}

// Load reads config.json and the weights in dir (safetensors or PyTorch .bin, single or sharded, or
// a HF cache snapshot folder) into dtype on dev, one tensor at a time.
func Load(dir string, dtype torch.DType, dev torch.Device) (m *Model, err error) {
	if !dtype.IsFloat() || dtype == torch.Float64 {
		return nil, fmt.Errorf("load %s: dtype %s not supported (want float32, float16 or bfloat16)", dir, dtype)
	}
	if err := torch.CheckDevice(dev); err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	cfg, err := ConfigFromFile(dir)
	if err != nil {
		return nil, err
	}
	store, err := weights.Open(dir)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	m = &Model{Cfg: cfg, DType: dtype, Device: dev, Dir: dir, blocks: make([]block, cfg.NLayer)}
	defer func() {
		if err != nil {
			m.Close()
			m = nil
		}
	}()
	var scratch []byte // one tensor at a time, reused
	get := func(name string, shape ...int64) (*torch.Tensor, error) {
		mapped, info, err := store.Bytes(name)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", name, err)
		}
		if !sameShape(info.Shape, shape) {
			return nil, fmt.Errorf("load %s from %s: shape %v, want %v (from config.json)", name, info.File, info.Shape, shape)
		}
		src, err := torchDType(info.DType)
		if err != nil {
			return nil, fmt.Errorf("load %s from %s: %w", name, info.File, err)
		}
		// Copy out of the memory map in Go with faults turned into panics: a file truncated
		// while we read it must be an error, not a SIGBUS inside libtorch.
		if cap(scratch) < len(mapped) {
			scratch = make([]byte, len(mapped))
		}
		b := scratch[:len(mapped)]
		if err := faultSafeCopy(b, mapped); err != nil {
			return nil, fmt.Errorf("load %s from %s: the file changed while it was read (truncated?): %v", name, info.File, err)
		}
		t, err := torch.FromBytes(b, src, info.Shape, dtype, dev)
		if err != nil {
			return nil, fmt.Errorf("load %s from %s: %w", name, info.File, err)
		}
		return t, nil
	}
	has := func(name string) bool { _, ok := store.Info(name); return ok }
	if err = m.loadWeights(get, has); err != nil {
		return m, err
	}
	scratch = nil
	debug.FreeOSMemory() // hand the scratch buffer (the largest tensor's bytes) back now
	return m, nil
}

// loadWeights fills m's weights by their checkpoint names (m.Cfg.Family.Names): get returns the
// tensor of a name in the model's dtype and device, or an error naming it when it is missing or
// its shape is not the one given; has reports whether a name exists. On an error the weights
// loaded so far stay in m for its Close.
func (m *Model) loadWeights(get func(name string, shape ...int64) (*torch.Tensor, error), has func(string) bool) (err error) {
	cfg, fam := m.Cfg, m.Cfg.Family
	n := fam.Names
	C, I, V := int64(cfg.NEmbd), int64(cfg.NInner), int64(cfg.VocabSize)
	H, Hkv, D := int64(cfg.NHead), int64(cfg.KVHeads()), int64(cfg.HeadDim())
	// a checkpoint of the base model alone stores its names without the base prefix
	base := n.Base
	if !has(base+n.Embed+".weight") && has(n.Embed+".weight") {
		base = ""
	} else if !has(base + n.Embed + ".weight") {
		return fmt.Errorf("load %s: the token embedding %s.weight is missing (a %s checkpoint; also looked for %s.weight)", m.Dir, base+n.Embed, cfg.ModelType, n.Embed)
	}
	// load reads name (with ".weight"/".bias") of Linear shape (out, in); a Conv1D weight is
	// stored (in, out) and becomes its transposed view
	linear := func(name string, out, in int64) (*torch.Tensor, error) {
		if !fam.Conv1D {
			return get(name, out, in)
		}
		t, err := get(name, in, out)
		if err != nil {
			return nil, err
		}
		s := torch.NewScope()
		defer s.Close()
		tt := s.Keep(s.Transpose(t, 0, 1)) // a view: the storage stays alive with it
		t.Close()
		return tt, s.Err()
	}
	type want struct {
		dst   **torch.Tensor
		name  string
		shape []int64
		lin   bool // a Linear weight: (out, in), stored transposed by a Conv1D family
	}
	norm := func(dw, db **torch.Tensor, name string, size int64) []want {
		if name == "" {
			return nil
		}
		w := []want{{dw, name + ".weight", []int64{size}, false}}
		if fam.Norm == LayerNorm {
			w = append(w, want{db, name + ".bias", []int64{size}, false})
		}
		return w
	}
	lin := func(dw, db **torch.Tensor, name string, out, in int64, bias bool) []want {
		w := []want{{dw, name + ".weight", []int64{out, in}, true}}
		if bias {
			w = append(w, want{db, name + ".bias", []int64{out}, false})
		}
		return w
	}
	load := func(prefix string, ws []want) error {
		for _, w := range ws {
			var t *torch.Tensor
			var err error
			if w.lin {
				t, err = linear(prefix+w.name, w.shape[0], w.shape[1])
			} else {
				t, err = get(prefix+w.name, w.shape...)
			}
			if err != nil {
				return err
			}
			*w.dst = t
		}
		return nil
	}

	top := []want{{&m.wte, n.Embed + ".weight", []int64{V, C}, false}}
	if fam.Rotary == RotaryNone {
		top = append(top, want{&m.wpe, n.Pos + ".weight", []int64{int64(cfg.NPositions), C}, false})
	}
	top = append(top, norm(&m.lnfW, &m.lnfB, n.FinalNorm, C)...)
	if err := load(base, top); err != nil {
		return err
	}
	head := ""
	for _, h := range n.Head {
		if has(h + ".weight") {
			head = h
			break
		}
	}
	switch {
	case cfg.Tied:
		m.headW = m.wte // one tensor, not a second copy of the embedding
	case head == "":
		return fmt.Errorf("load %s: the unembedding %s.weight is missing (and tie_word_embeddings is false)", m.Dir, strings.Join(n.Head, ".weight / "))
	default:
		if m.headW, err = get(head+".weight", V, C); err != nil {
			return err
		}
	}
	if head != "" && has(head+".bias") {
		if m.headB, err = get(head+".bias", V); err != nil {
			return err
		}
	}
	for i := range m.blocks {
		b := &m.blocks[i]
		var ws []want
		ws = append(ws, norm(&b.ln1W, &b.ln1B, n.Norm1, C)...)
		ws = append(ws, norm(&b.ln2W, &b.ln2B, n.Norm2, C)...)
		switch fam.QKV {
		case QKVSeparate:
			ws = append(ws, lin(&b.q, &b.qB, n.Q, H*D, C, cfg.QKVBias)...)
			ws = append(ws, lin(&b.k, &b.kB, n.K, Hkv*D, C, cfg.QKVBias)...)
			ws = append(ws, lin(&b.v, &b.vB, n.V, Hkv*D, C, cfg.QKVBias)...)
		default:
			ws = append(ws, lin(&b.qkv, &b.qkvB, n.QKV, (H+2*Hkv)*D, C, cfg.QKVBias)...)
		}
		ws = append(ws, lin(&b.o, &b.oB, n.O, C, H*D, cfg.OutBias)...)
		if fam.QKNorm {
			ws = append(ws, want{&b.qNorm, n.QNorm + ".weight", []int64{D}, false}, want{&b.kNorm, n.KNorm + ".weight", []int64{D}, false})
		}
		if fam.MLP == MLPGated {
			ws = append(ws, lin(&b.gateW, &b.gateB, n.Gate, I, C, cfg.MLPBias)...)
		}
		ws = append(ws, lin(&b.fcInW, &b.fcInB, n.Up, I, C, cfg.MLPBias)...)
		ws = append(ws, lin(&b.fcOutW, &b.fcOutB, n.Down, C, I, cfg.MLPBias)...)
		if err := load(base+fmt.Sprintf(n.Layer, i), ws); err != nil {
			return err
		}
	}
	if fam.Rotary != RotaryNone {
		if m.sincos, err = ropeTable(cfg.NPositions, invFreq(cfg), m.DType, m.Device); err != nil {
			return err
		}
	}
	return nil
}

// faultSafeCopy copies src into dst, returning an error instead of crashing when reading src
// faults (a memory-mapped file truncated underneath us raises SIGBUS).
func faultSafeCopy(dst, src []byte) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	copy(dst, src)
	return nil
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sinCosTable is HF's create_sinusoidal_positions: (n, rot) = [sin(p·f) | cos(p·f)] with
// f_j = 1 / 10000^(2j/rot), as ropeTable computes it.
func sinCosTable(n, rot int, dtype torch.DType, dev torch.Device) (*torch.Tensor, error) {
	return ropeTable(n, ropeFreqs(rot, 10000), dtype, dev)
}

// ropeTable is the rotary table (n, 2·len(inv)) = [sin(p·f) | cos(p·f)] for positions p < n and
// frequencies f = inv, computed on dev in float32 the way transformers computes its rotary
// angles (float32(p) · f, then sin and cos in float32), then cast to dtype.
func ropeTable(n int, inv []float32, dtype torch.DType, dev torch.Device) (*torch.Tensor, error) {
	s := torch.NewScope()
	defer s.Close()
	f := torch.ScopeFromSlice(s, inv, []int64{1, int64(len(inv))}, torch.Float32, dev)
	a := s.Mul(s.Unsqueeze(s.Arange(0, int64(n), torch.Float32, dev), 1), f) // (n, rot/2)
	t := s.To(s.Cat([]*torch.Tensor{s.Sin(a), s.Cos(a)}, 1), dtype, dev)
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("rotary table: %w", err)
	}
	return s.Keep(t), nil
}

// ropeFreqs is the rotary frequencies 1 / theta^(2j/rot), j < rot/2, in float32 as transformers
// computes them.
func ropeFreqs(rot int, theta float64) []float32 {
	inv := make([]float32, rot/2)
	for j := range inv {
		e := float32(2*j) / float32(rot)
		inv[j] = float32(1.0) / float32(math.Pow(theta, float64(e)))
	}
	return inv
}

// invFreq is the config's rotary frequencies with its scaling (transformers'
// ROPE_INIT_FUNCTIONS: default, linear, llama3).
func invFreq(c Config) []float32 {
	theta := c.RopeTheta
	if theta == 0 {
		theta = 10000 // a Config made by hand for GPT-J
	}
	inv := ropeFreqs(c.RotaryDim, theta)
	r := c.Rope
	switch r.Type {
	case "linear":
		for j := range inv {
			inv[j] = inv[j] / float32(r.Factor)
		}
	case "llama3":
		// _compute_llama3_parameters: long wavelengths are divided by factor, short ones kept,
		// the band between interpolated smoothly
		old := float32(r.OriginalMaxPositions)
		lowWave := old / float32(r.LowFreqFactor)
		highWave := old / float32(r.HighFreqFactor)
		for j, f := range inv {
			wave := float32(2*math.Pi) / f
			scaled := f
			if wave > lowWave {
				scaled = f / float32(r.Factor)
			}
			if !(wave < highWave) && !(wave > lowWave) {
				smooth := (old/wave - float32(r.LowFreqFactor)) / float32(r.HighFreqFactor-r.LowFreqFactor)
				scaled = (1-smooth)*scaled/float32(r.Factor) + smooth*scaled
			}
			inv[j] = scaled
		}
	}
	return inv
}

func sortedKeys(m map[string]bool) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// ErrClosed is returned by a closed model.
var ErrClosed = errors.New("gptj: model is closed")
