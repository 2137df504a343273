package gptj

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"

	"github.com/simplescope/simplescope/core/config"
	"github.com/simplescope/simplescope/core/torch"
	"github.com/simplescope/simplescope/core/weights"
)

// Config is the part of GPT-J's config.json the forward pass needs.
type Config struct {
	NEmbd, NLayer, NHead, RotaryDim, VocabSize, NPositions, NInner int
	LayerNormEps                                                   float64
	Activation                                                     string
	BOS, EOS                                                       int
	Tied                                                           bool // tie_word_embeddings: lm_head shares wte
}

// maxPositions bounds n_positions: the rotary table is n_positions × rotary_dim.
const maxPositions = 1 << 20

// HeadDim is n_embd / n_head.
func (c Config) HeadDim() int { return c.NEmbd / c.NHead }

// Validate checks the shapes fit together.
func (c Config) Validate() error {
	switch {
	case c.NEmbd <= 0 || c.NLayer <= 0 || c.NHead <= 0 || c.VocabSize <= 0 || c.NPositions <= 0:
		return fmt.Errorf("config: n_embd, n_layer, n_head, vocab_size and n_positions must be positive (got %d, %d, %d, %d, %d)", c.NEmbd, c.NLayer, c.NHead, c.VocabSize, c.NPositions)
	case c.NPositions > maxPositions:
		return fmt.Errorf("config: n_positions %d is implausibly large (at most %d supported)", c.NPositions, maxPositions)
	case c.NEmbd%c.NHead != 0:
		return fmt.Errorf("config: n_embd %d is not divisible by n_head %d", c.NEmbd, c.NHead)
	case c.RotaryDim <= 0 || c.RotaryDim > c.HeadDim() || c.RotaryDim%2 != 0:
		return fmt.Errorf("config: rotary_dim %d must be even and in 1..head_dim (%d)", c.RotaryDim, c.HeadDim())
	case c.Activation != "gelu_new" && c.Activation != "gelu_pytorch_tanh":
		return fmt.Errorf("config: activation_function %q is not supported (want gelu_new)", c.Activation)
	}
	return nil
}

// block holds one transformer block's weights (checkpoint names in comments).
type block struct {
	ln1W, ln1B     *torch.Tensor // h.{i}.ln_1.weight/bias (C)
	q, k, v, o     *torch.Tensor // h.{i}.attn.{q,k,v,out}_proj.weight (C, C)
	fcInW, fcInB   *torch.Tensor // h.{i}.mlp.fc_in (I, C), (I)
	fcOutW, fcOutB *torch.Tensor // h.{i}.mlp.fc_out (C, I), (C)
}

// Model is a loaded GPT-J. Its methods are safe for concurrent use (weights are read-only).
type Model struct {
	Cfg    Config
	DType  torch.DType
	Device torch.Device
	Dir    string

	wte        *torch.Tensor // transformer.wte.weight (V, C)
	lnfW, lnfB *torch.Tensor // transformer.ln_f (C)
	headW      *torch.Tensor // lm_head.weight (V, C)
	headB      *torch.Tensor // lm_head.bias (V) or nil
	blocks     []block
	sincos     *torch.Tensor // (n_positions, rotary_dim): [sin | cos], model dtype

	closeOnce sync.Once
}

// Close frees all weights.
func (m *Model) Close() {
	m.closeOnce.Do(func() {
		for _, t := range m.all() {
			t.Close()
		}
	})
}

func (m *Model) all() []*torch.Tensor {
	ts := []*torch.Tensor{m.wte, m.lnfW, m.lnfB, m.headW, m.headB, m.sincos}
	for _, b := range m.blocks {
		ts = append(ts, b.ln1W, b.ln1B, b.q, b.k, b.v, b.o, b.fcInW, b.fcInB, b.fcOutW, b.fcOutB)
	}
	return ts
}

// ConfigFromFile converts the checkpoint's config.json to Config.
func ConfigFromFile(dir string) (Config, error) {
	c, err := config.ReadGPTJConfig(dir)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{
		NEmbd: c.NEmbd, NLayer: c.NLayer, NHead: c.NHead, RotaryDim: c.RotaryDim, VocabSize: c.VocabSize,
		NPositions: c.NPositions, NInner: c.NInner, LayerNormEps: c.LayerNormEpsilon,
		Activation: c.ActivationFunction, BOS: c.BOSTokenID, EOS: c.EOSTokenID, Tied: c.TieWordEmbeddings,
	}
	if cfg.NInner == 0 {
		cfg.NInner = 4 * cfg.NEmbd
	}
	if cfg.RotaryDim == 0 {
		cfg.RotaryDim = cfg.HeadDim()
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
	C, I, V := int64(cfg.NEmbd), int64(cfg.NInner), int64(cfg.VocabSize)
	var scratch []byte // one tensor at a time, reused
	get := func(name string, shape ...int64) (*torch.Tensor, error) {
		mapped, info, err := store.Bytes(name)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", name, err)
		}
		if !sameShape(info.Shape, shape) {
			return nil, fmt.Errorf("load %s from %s: shape %v, want %v", name, info.File, info.Shape, shape)
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
	if m.wte, err = get("transformer.wte.weight", V, C); err != nil {
		return m, err
	}
	if m.lnfW, err = get("transformer.ln_f.weight", C); err != nil {
		return m, err
	}
	if m.lnfB, err = get("transformer.ln_f.bias", C); err != nil {
		return m, err
	}
	if has("lm_head.weight") {
		if m.headW, err = get("lm_head.weight", V, C); err != nil {
			return m, err
		}
	} else if cfg.Tied {
		if m.headW, err = get("transformer.wte.weight", V, C); err != nil {
			return m, err
		}
	} else {
		return m, fmt.Errorf("load %s: tensor lm_head.weight not found (and tie_word_embeddings is false)", dir)
	}
	if has("lm_head.bias") {
		if m.headB, err = get("lm_head.bias", V); err != nil {
			return m, err
		}
	}
	for i := range m.blocks {
		p := fmt.Sprintf("transformer.h.%d.", i)
		b := &m.blocks[i]
		for _, w := range []struct {
			dst   **torch.Tensor
			name  string
			shape []int64
		}{
			{&b.ln1W, "ln_1.weight", []int64{C}}, {&b.ln1B, "ln_1.bias", []int64{C}},
			{&b.q, "attn.q_proj.weight", []int64{C, C}}, {&b.k, "attn.k_proj.weight", []int64{C, C}},
			{&b.v, "attn.v_proj.weight", []int64{C, C}}, {&b.o, "attn.out_proj.weight", []int64{C, C}},
			{&b.fcInW, "mlp.fc_in.weight", []int64{I, C}}, {&b.fcInB, "mlp.fc_in.bias", []int64{I}},
			{&b.fcOutW, "mlp.fc_out.weight", []int64{C, I}}, {&b.fcOutB, "mlp.fc_out.bias", []int64{C}},
		} {
			if *w.dst, err = get(p+w.name, w.shape...); err != nil {
				return m, err
			}
		}
	}
	if m.sincos, err = sinCosTable(cfg.NPositions, cfg.RotaryDim, dtype, dev); err != nil {
		return m, err
	}
	scratch = nil
	debug.FreeOSMemory() // hand the scratch buffer (the largest tensor's bytes) back now
	return m, nil
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
// f_j = 1 / 10000^(2j/rot), computed in float32 as HF does, then cast to the model dtype.
func sinCosTable(n, rot int, dtype torch.DType, dev torch.Device) (*torch.Tensor, error) {
	half := rot / 2
	inv := make([]float32, half)
	for j := range inv {
		e := float32(2*j) / float32(rot)
		inv[j] = float32(1.0) / float32(math.Pow(10000, float64(e)))
	}
	tab := make([]float32, n*rot)
	for p := 0; p < n; p++ {
		for j := 0; j < half; j++ {
			a := float32(p) * inv[j]
			tab[p*rot+j] = float32(math.Sin(float64(a)))
			tab[p*rot+half+j] = float32(math.Cos(float64(a)))
		}
	}
	return torch.FromSlice(tab, []int64{int64(n), int64(rot)}, dtype, dev)
}

// ErrClosed is returned by a closed model.
var ErrClosed = errors.New("gptj: model is closed")
