package gptj

import (
	"fmt"

	"github.com/simplescope/simplescope/core/config"
	"github.com/simplescope/simplescope/core/torch"
)

// ConfigFromJSON converts a config.json's bytes (e.g. a HF model's config.to_json_string()) of
// any supported family.
func ConfigFromJSON(b []byte) (Config, error) {
	c, err := config.ParseDecoder(b)
	if err != nil {
		return Config{}, err
	}
	return FromDecoder(c)
}

// FromTensors builds a model from tensors named by their checkpoint keys (the family's names,
// cfg.Family.Names: transformer.wte.weight, transformer.h.{i}.attn.q_proj.weight, lm_head.weight,
// … for GPT-J; a Config without a family is GPT-J's; other keys, such as HF's attention-mask
// buffers, are ignored). A tensor that already has dtype, device dev and a contiguous layout is
// used as it is (the model holds a second handle on the same memory: no copy); any other float
// tensor is converted once. ts stays the caller's: it closes its handles whenever it likes.
// Errors name the key and both shapes.
func FromTensors(cfg Config, ts map[string]*torch.Tensor, dtype torch.DType, dev torch.Device) (m *Model, err error) {
	if !dtype.IsFloat() || dtype == torch.Float64 {
		return nil, fmt.Errorf("dtype %s not supported (want float32, float16 or bfloat16)", dtype)
	}
	if cfg.ModelType == "" { // a GPT-J Config made by hand
		cfg.ModelType, cfg.Family = "gptj", families["gptj"]
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := torch.CheckDevice(dev); err != nil {
		return nil, err
	}
	m = &Model{Cfg: cfg, DType: dtype, Device: dev, blocks: make([]block, cfg.NLayer)}
	defer func() {
		if err != nil {
			m.Close()
			m = nil
		}
	}()
	get := func(name string, shape ...int64) (*torch.Tensor, error) {
		t, ok := ts[name]
		if !ok || t == nil {
			return nil, fmt.Errorf("tensor %s not given", name)
		}
		if got := t.Shape(); !sameShape(got, shape) {
			return nil, fmt.Errorf("tensor %s: shape %v, want %v", name, got, shape)
		}
		if d := t.DType(); !d.IsFloat() {
			return nil, fmt.Errorf("tensor %s: dtype %s, want a floating-point tensor", name, d)
		}
		out, err := t.ToContiguous(dtype, dev)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		return out, nil
	}
	has := func(name string) bool { t, ok := ts[name]; return ok && t != nil }
	return m, m.loadWeights(get, has)
}

// WTE is the token embedding (V, C), owned by the model (for checks that no copy was made).
func (m *Model) WTE() *torch.Tensor { return m.wte }
