package gptj

import (
	"fmt"

	"github.com/simplescope/simplescope/core/config"
	"github.com/simplescope/simplescope/core/torch"
)

// ConfigFromJSON converts a config.json's bytes (e.g. a HF model's config.to_json_string()).
func ConfigFromJSON(b []byte) (Config, error) {
	c, err := config.ParseGPTJConfig(b)
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

// FromTensors builds a model from tensors named by their checkpoint keys
// (transformer.wte.weight, transformer.h.{i}.attn.q_proj.weight, lm_head.weight, ...; others,
// such as HF's attention-mask buffers, are ignored). A tensor that already has dtype, device dev
// and a contiguous layout is used as it is (the model holds a second handle on the same memory:
// no copy); any other float tensor is converted once. ts stays the caller's: it closes its
// handles whenever it likes. Errors name the key and both shapes.
func FromTensors(cfg Config, ts map[string]*torch.Tensor, dtype torch.DType, dev torch.Device) (m *Model, err error) {
	if !dtype.IsFloat() || dtype == torch.Float64 {
		return nil, fmt.Errorf("dtype %s not supported (want float32, float16 or bfloat16)", dtype)
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
	C, I, V := int64(cfg.NEmbd), int64(cfg.NInner), int64(cfg.VocabSize)
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
	if m.wte, err = get("transformer.wte.weight", V, C); err != nil {
		return m, err
	}
	if m.lnfW, err = get("transformer.ln_f.weight", C); err != nil {
		return m, err
	}
	if m.lnfB, err = get("transformer.ln_f.bias", C); err != nil {
		return m, err
	}
	if _, ok := ts["lm_head.weight"]; ok || !cfg.Tied {
		if m.headW, err = get("lm_head.weight", V, C); err != nil {
			return m, err
		}
	} else if m.headW, err = get("transformer.wte.weight", V, C); err != nil {
		return m, err
	}
	if _, ok := ts["lm_head.bias"]; ok {
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
	return m, nil
}

// WTE is the token embedding (V, C), owned by the model (for checks that no copy was made).
func (m *Model) WTE() *torch.Tensor { return m.wte }
