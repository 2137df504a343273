package config

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Decoder is the config.json of a decoder-only model of a supported family, in one vocabulary:
// each family's own field names and defaults (transformers' config classes) are read into the
// same fields here. Sizes are final (defaults applied, derived values filled in).
type Decoder struct {
	ModelType string // model_type: one of Supported

	Hidden    int // hidden_size / n_embd
	Layers    int // num_hidden_layers / n_layer
	Heads     int // num_attention_heads / n_head
	KVHeads   int // num_key_value_heads (= Heads without grouped-query attention)
	HeadDim   int // head_dim (hidden / heads unless the config says otherwise)
	Inner     int // intermediate_size / n_inner: the MLP width
	Vocab     int // vocab_size
	Positions int // max_position_embeddings / n_positions: the context length

	NormEps    float64 // layer_norm_eps / layer_norm_epsilon / rms_norm_eps
	Activation string  // hidden_act / activation_function (the MLP's, or its gate's)

	// Rotary position embedding: the leading RotaryDim dimensions of every query and key head
	// rotate (0: none, the model has learned positions). RopeTheta is the base of the
	// frequencies and Rope their scaling.
	RotaryDim int
	RopeTheta float64
	Rope      RopeScaling

	ParallelResidual bool // attention and MLP read the same block input (GPT-J, NeoX's use_parallel_residual)
	Tied             bool // tie_word_embeddings: the unembedding is the token embedding

	QKVBias bool // the query, key and value projections have biases
	OutBias bool // the attention output projection has a bias
	MLPBias bool // the MLP projections have biases

	// Windows[l] is layer l's sliding attention window in tokens (a query sees the keys less
	// than Windows[l] positions behind it), 0 for full attention. Windows a config switches
	// off (use_sliding_window false, sliding_window null) are 0, as in transformers.
	Windows []int

	// AttnScale[l] multiplies the usual 1/sqrt(head_dim) attention scale at layer l (GPT-2's
	// scale_attn_weights and scale_attn_by_inverse_layer_idx); nil means 1 everywhere.
	AttnScale []float64

	BOS, EOS int // bos_token_id, eos_token_id (the first one when a list; -1 when null)
}

// RopeScaling is a rope_scaling / rope_parameters entry. Type is "default" (no scaling),
// "linear" (positions divided by Factor) or "llama3" (Llama 3.1's frequency-dependent scaling).
type RopeScaling struct {
	Type                          string
	Factor                        float64
	LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositions          int
}

// Supported lists the model_type values ReadDecoder understands.
var Supported = []string{"gemma", "gpt2", "gpt_neox", "gptj", "llama", "mistral", "qwen2", "qwen3"}

// ReadDecoder reads dir/config.json (dir may also be the file itself) of any supported family.
func ReadDecoder(dir string) (Decoder, error) {
	path := dir
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		path = filepath.Join(dir, "config.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Decoder{}, fmt.Errorf("read model config: %w", err)
	}
	c, err := ParseDecoder(b)
	if err != nil {
		return Decoder{}, fmt.Errorf("read model config %s: %w", path, err)
	}
	return c, nil
}

// ParseDecoder parses the bytes of a config.json with the rules of ReadDecoder.
func ParseDecoder(b []byte) (Decoder, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return Decoder{}, fmt.Errorf("bad JSON: %w", err)
	}
	if raw == nil {
		return Decoder{}, fmt.Errorf("not a JSON object")
	}
	f := &fields{raw: raw}
	mt := f.str("model_type", "")
	if f.err != nil {
		return Decoder{}, f.err
	}
	var c Decoder
	var err error
	switch mt {
	case "gptj":
		var g GPTJConfig
		if g, err = parseGPTJ(raw); err == nil && g.NLayer > maxLayers {
			err = fmt.Errorf("field n_layer = %d is implausibly large (at most %d supported)", g.NLayer, maxLayers)
		}
		if err == nil {
			c = fromGPTJ(g)
		}
	case "gpt2":
		c, err = parseGPT2(f)
	case "gpt_neox":
		c, err = parseNeoX(f)
	case "llama", "mistral", "qwen2", "qwen3", "gemma":
		c, err = parseLlamaLike(f, mt)
	case "":
		return Decoder{}, fmt.Errorf("model_type is missing (supported: %s)", strings.Join(Supported, ", "))
	default:
		return Decoder{}, fmt.Errorf("model_type %q is not supported (supported: %s)", mt, strings.Join(Supported, ", "))
	}
	c.ModelType = mt
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		return c, fmt.Errorf("%s config: %w", mt, err)
	}
	return c, nil
}

// Validate checks that the sizes fit together.
func (c Decoder) Validate() error {
	for _, p := range []struct {
		name string
		v    int
	}{{"hidden size", c.Hidden}, {"layer count", c.Layers}, {"head count", c.Heads}, {"key/value head count", c.KVHeads},
		{"head_dim", c.HeadDim}, {"MLP width", c.Inner}, {"vocab_size", c.Vocab}, {"context length", c.Positions}} {
		if p.v <= 0 {
			return fmt.Errorf("%s = %d must be positive", p.name, p.v)
		}
	}
	switch {
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("num_attention_heads = %d is not a multiple of num_key_value_heads = %d", c.Heads, c.KVHeads)
	case c.RotaryDim < 0 || c.RotaryDim%2 != 0 || c.RotaryDim > c.HeadDim:
		return fmt.Errorf("rotary dimension %d must be even and in 0…head_dim (%d)", c.RotaryDim, c.HeadDim)
	case !(c.NormEps > 0):
		return fmt.Errorf("norm epsilon %g must be positive", c.NormEps)
	case c.RotaryDim > 0 && !(c.RopeTheta > 0):
		return fmt.Errorf("rope_theta = %g must be positive", c.RopeTheta)
	case len(c.Windows) != c.Layers:
		return fmt.Errorf("%d sliding windows for %d layers", len(c.Windows), c.Layers)
	case c.AttnScale != nil && len(c.AttnScale) != c.Layers:
		return fmt.Errorf("%d attention scales for %d layers", len(c.AttnScale), c.Layers)
	}
	for l, w := range c.Windows {
		if w < 0 {
			return fmt.Errorf("layer %d: sliding window %d is negative", l, w)
		}
	}
	switch c.Rope.Type {
	case "default":
	case "linear":
		if !(c.Rope.Factor >= 1) {
			return fmt.Errorf("rope scaling factor %g must be at least 1", c.Rope.Factor)
		}
	case "llama3":
		r := c.Rope
		if !(r.Factor >= 1) || !(r.LowFreqFactor > 0) || !(r.HighFreqFactor > r.LowFreqFactor) || r.OriginalMaxPositions <= 0 {
			return fmt.Errorf("llama3 rope scaling needs factor >= 1, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0 (got %+v)", r)
		}
	default:
		return fmt.Errorf("rope type %q is not supported (want default, linear or llama3)", c.Rope.Type)
	}
	return nil
}

// Window returns layer l's sliding window (0: full attention).
func (c Decoder) Window(l int) int {
	if l < 0 || l >= len(c.Windows) {
		return 0
	}
	return c.Windows[l]
}

func fromGPTJ(g GPTJConfig) Decoder {
	return Decoder{
		ModelType: "gptj", Hidden: g.NEmbd, Layers: g.NLayer, Heads: g.NHead, KVHeads: g.NHead, HeadDim: g.HeadDim(),
		Inner: g.NInner, Vocab: g.VocabSize, Positions: g.NPositions, NormEps: g.LayerNormEpsilon,
		Activation: g.ActivationFunction, RotaryDim: g.RotaryDim, RopeTheta: 10000, Rope: RopeScaling{Type: "default"},
		ParallelResidual: true, Tied: g.TieWordEmbeddings, MLPBias: true, Windows: make([]int, g.NLayer),
		BOS: g.BOSTokenID, EOS: g.EOSTokenID,
	}
}

// maxLayers bounds the layer count before per-layer slices are made from it.
const maxLayers = 1 << 16

// layers returns n when it is a plausible layer count, 0 otherwise (recording the error).
func (f *fields) layers(key string, n int) int {
	if n > maxLayers {
		f.fail("field %s = %d is implausibly large (at most %d supported)", key, n, maxLayers)
		return 0
	}
	return max(n, 0)
}

// required reads the shape-defining integer fields, which must be present: transformers would
// default a missing one to the size of some large model, which is never what a checkpoint means.
func (f *fields) required(keys ...string) []int {
	out := make([]int, len(keys))
	for i, k := range keys {
		out[i] = f.integer(k, 0, true)
	}
	return out
}

// GPT-2 (transformers' GPT2Config): learned positions, one fused attention projection stored
// as Conv1D, sequential residual, biases everywhere, tied embeddings by default.
func parseGPT2(f *fields) (Decoder, error) {
	r := f.required("n_embd", "n_layer", "n_head", "vocab_size")
	c := Decoder{Hidden: r[0], Layers: f.layers("n_layer", r[1]), Heads: r[2], KVHeads: r[2], Vocab: r[3]}
	c.Positions = f.integer("n_positions", 1024, false)
	c.Inner = f.integer("n_inner", 4*c.Hidden, false)
	c.NormEps = f.number("layer_norm_epsilon", 1e-5)
	c.Activation = f.str("activation_function", "gelu_new")
	c.Tied = f.boolean("tie_word_embeddings", true)
	c.QKVBias, c.OutBias, c.MLPBias = true, true, true
	c.Rope = RopeScaling{Type: "default"}
	c.BOS = f.tokenID("bos_token_id", 50256)
	c.EOS = f.tokenID("eos_token_id", 50256)
	scale := f.boolean("scale_attn_weights", true)
	byLayer := f.boolean("scale_attn_by_inverse_layer_idx", false)
	if f.boolean("add_cross_attention", false) {
		f.fail("add_cross_attention = true is not supported (a decoder-only model has no cross-attention)")
	}
	if f.err != nil {
		return c, f.err
	}
	if c.Heads > 0 && c.Hidden%c.Heads != 0 {
		return c, fmt.Errorf("n_embd = %d is not divisible by n_head = %d", c.Hidden, c.Heads)
	}
	if c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	c.Windows = make([]int, c.Layers)
	if !scale || byLayer {
		c.AttnScale = make([]float64, c.Layers)
		for l := range c.AttnScale {
			s := 1.0
			if !scale {
				s = math.Sqrt(float64(c.HeadDim)) // undo the usual 1/sqrt(head_dim)
			}
			if byLayer {
				s /= float64(l + 1)
			}
			c.AttnScale[l] = s
		}
	}
	return c, nil
}

// GPT-NeoX / Pythia (transformers' GPTNeoXConfig): fused per-head QKV, partial NeoX-style rotary,
// parallel residual with two layer norms (or sequential), untied unembedding by default.
func parseNeoX(f *fields) (Decoder, error) {
	r := f.required("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
	c := Decoder{Hidden: r[0], Layers: f.layers("num_hidden_layers", r[1]), Heads: r[2], KVHeads: r[2], Vocab: r[3], Inner: r[4]}
	c.Positions = f.integer("max_position_embeddings", 2048, false)
	c.NormEps = f.number("layer_norm_eps", 1e-5)
	c.Activation = f.str("hidden_act", "gelu")
	c.Tied = f.boolean("tie_word_embeddings", false)
	c.ParallelResidual = f.boolean("use_parallel_residual", true)
	c.QKVBias = f.boolean("attention_bias", true)
	c.OutBias = c.QKVBias
	c.MLPBias = true
	c.BOS = f.tokenID("bos_token_id", 0)
	c.EOS = f.tokenID("eos_token_id", 2)
	// the Hub's rotary_pct / rotary_emb_base, or transformers 5's rope_parameters
	pct := f.number("rotary_pct", 0.25)
	theta := f.number("rotary_emb_base", 10000)
	rope := f.rope(theta, &pct)
	if f.err != nil {
		return c, f.err
	}
	if c.Heads > 0 && c.Hidden%c.Heads != 0 {
		return c, fmt.Errorf("hidden_size = %d is not divisible by num_attention_heads = %d", c.Hidden, c.Heads)
	}
	if c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	if !(pct > 0 && pct <= 1) {
		return c, fmt.Errorf("rotary_pct (partial_rotary_factor) = %g must be in (0, 1]", pct)
	}
	c.RotaryDim = int(float64(c.HeadDim) * pct) // transformers: int(head_size * rotary_pct)
	c.RopeTheta, c.Rope = rope.theta, rope.scaling
	c.Windows = make([]int, c.Layers)
	return c, nil
}

// Llama 2/3, Mistral, Qwen2, Qwen3, Gemma (transformers' LlamaConfig, MistralConfig, Qwen2Config,
// Qwen3Config, GemmaConfig): RMSNorm, SwiGLU, grouped-query attention, rotate_half rotary over the
// whole head, sequential residual; Mistral adds a sliding window on every layer, Qwen2 QKV biases
// and optional windows on the upper layers, Qwen3 per-head q/k norms, Gemma GeGLU with its own
// defaults (the norm and embedding scale are the family's, in gptj).
func parseLlamaLike(f *fields, mt string) (Decoder, error) {
	r := f.required("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
	c := Decoder{Hidden: r[0], Layers: f.layers("num_hidden_layers", r[1]), Heads: r[2], Vocab: r[3], Inner: r[4]}
	defKV := c.Heads
	switch mt {
	case "mistral":
		defKV = 8 // MistralConfig's default when the field is absent (null: the head count)
	case "gemma":
		defKV = 16 // GemmaConfig's
	}
	if _, present, null := f.lookup("num_key_value_heads"); present && null {
		c.KVHeads = c.Heads
	} else {
		c.KVHeads = f.integer("num_key_value_heads", defKV, false)
	}
	defHead := map[string]int{"qwen3": 128, "gemma": 256}[mt] // their config classes' default head_dim
	if _, present, null := f.lookup("head_dim"); present && null {
		defHead = 0
	} else {
		defHead = f.integer("head_dim", defHead, false)
	}
	positions := map[string]int{"llama": 2048, "mistral": 4096 * 32, "qwen2": 32768, "qwen3": 32768, "gemma": 8192}
	c.Positions = f.integer("max_position_embeddings", positions[mt], false)
	c.NormEps = f.number("rms_norm_eps", 1e-6)
	c.Activation = f.str("hidden_act", "silu")
	c.Tied = f.boolean("tie_word_embeddings", false)
	switch mt {
	case "gemma":
		c.Activation = f.str("hidden_act", "gelu_pytorch_tanh")
		if c.Activation == "gelu" {
			// GemmaConfig: the official releases' "gelu" means the tanh approximation
			c.Activation = "gelu_pytorch_tanh"
		}
		c.Tied = f.boolean("tie_word_embeddings", true)
		c.QKVBias = f.boolean("attention_bias", false)
		c.OutBias = c.QKVBias
	case "llama":
		c.QKVBias = f.boolean("attention_bias", false)
		c.OutBias = c.QKVBias
		c.MLPBias = f.boolean("mlp_bias", false)
	case "qwen2":
		c.QKVBias = true // Qwen2Attention: q, k, v biases, none on o_proj
	case "qwen3":
		c.QKVBias = f.boolean("attention_bias", false)
		c.OutBias = c.QKVBias
	}
	bos := map[string]int{"llama": 1, "mistral": 1, "qwen2": -1, "qwen3": -1, "gemma": 2}
	eos := map[string]int{"llama": 2, "mistral": 2, "qwen2": -1, "qwen3": -1, "gemma": 1}
	c.BOS = f.tokenID("bos_token_id", bos[mt])
	c.EOS = f.tokenID("eos_token_id", eos[mt])
	var partial *float64
	if _, ok := f.raw["partial_rotary_factor"]; ok {
		p := f.number("partial_rotary_factor", 1)
		partial = &p
	}
	rope := f.rope(f.number("rope_theta", 10000), partial)
	c.Windows = make([]int, c.Layers)
	switch mt {
	case "mistral":
		// every layer (MistralConfig ignores layer_types); null switches it off
		w := 4096
		if _, present, null := f.lookup("sliding_window"); present && null {
			w = 0
		} else {
			w = f.integer("sliding_window", 4096, false)
		}
		for l := range c.Windows {
			c.Windows[l] = w
		}
	case "qwen2", "qwen3":
		// use_sliding_window false switches the window off whatever layer_types say
		w := 0
		if f.boolean("use_sliding_window", false) {
			if _, present, null := f.lookup("sliding_window"); !(present && null) {
				w = f.integer("sliding_window", 4096, false)
			}
		}
		types := f.strList("layer_types")
		maxFull := f.integer("max_window_layers", 28, false)
		if types != nil && len(types) != c.Layers && f.err == nil {
			f.fail("layer_types has %d entries for %d layers", len(types), c.Layers)
		}
		for l := range c.Windows {
			sliding := l >= maxFull
			if types != nil && l < len(types) {
				switch types[l] {
				case "sliding_attention":
					sliding = true
				case "full_attention":
					sliding = false
				default:
					f.fail("layer_types[%d] = %q is not supported (want full_attention or sliding_attention)", l, types[l])
				}
			}
			if sliding {
				c.Windows[l] = w
			}
		}
	}
	if f.err != nil {
		return c, f.err
	}
	if c.Heads > 0 && defHead == 0 {
		if c.Hidden%c.Heads != 0 {
			return c, fmt.Errorf("hidden_size = %d is not divisible by num_attention_heads = %d (and head_dim is not given)", c.Hidden, c.Heads)
		}
		defHead = c.Hidden / c.Heads
	}
	c.HeadDim = defHead
	c.RopeTheta, c.Rope = rope.theta, rope.scaling
	if rope.partial != nil {
		c.RotaryDim = int(float64(c.HeadDim) * *rope.partial)
	} else {
		c.RotaryDim = c.HeadDim
	}
	if c.KVHeads <= 0 {
		return c, fmt.Errorf("num_key_value_heads = %d must be positive", c.KVHeads)
	}
	return c, nil
}

type ropeConfig struct {
	theta   float64
	scaling RopeScaling
	partial *float64 // partial_rotary_factor, when given
}

// rope reads the rotary settings in either layout: transformers 5's rope_parameters {rope_type,
// rope_theta, partial_rotary_factor, factor, …} or the Hub's rope_theta (given here as theta,
// already read with the family's default) with an optional rope_scaling {type|rope_type, factor,
// …}. partial, when not nil, is the family's own partial-rotary field already read; a
// partial_rotary_factor in rope_parameters replaces it.
func (f *fields) rope(theta float64, partial *float64) ropeConfig {
	rc := ropeConfig{theta: theta, scaling: RopeScaling{Type: "default"}, partial: partial}
	// when both are present rope_parameters wins, as in transformers (rope_scaling is the old name)
	field := "rope_parameters"
	obj := f.object(field)
	if obj == nil {
		field = "rope_scaling"
		obj = f.object(field)
	}
	if obj == nil || f.err != nil {
		return rc
	}
	g := &fields{raw: obj}
	typ := g.str("rope_type", "")
	if typ == "" {
		typ = g.str("type", "default")
	}
	rc.theta = g.number("rope_theta", theta)
	if _, ok := obj["partial_rotary_factor"]; ok {
		p := g.number("partial_rotary_factor", 1)
		rc.partial = &p
	}
	rc.scaling.Type = typ
	switch typ {
	case "default":
	case "linear":
		rc.scaling.Factor = g.number("factor", 0)
	case "llama3":
		rc.scaling.Factor = g.number("factor", 0)
		rc.scaling.LowFreqFactor = g.number("low_freq_factor", 0)
		rc.scaling.HighFreqFactor = g.number("high_freq_factor", 0)
		// transformers: original_max_position_embeddings defaults to max_position_embeddings
		rc.scaling.OriginalMaxPositions = g.integer("original_max_position_embeddings", f.integer("max_position_embeddings", 0, false), false)
	default:
		g.fail("rope type %q is not supported (want default, linear or llama3)", typ)
	}
	if g.err != nil {
		f.fail("%s: %v", field, g.err)
	}
	return rc
}

// object reads a JSON object field (nil when absent or null).
func (f *fields) object(key string) map[string]json.RawMessage {
	msg, present, null := f.lookup(key)
	if !present || null {
		return nil
	}
	var o map[string]json.RawMessage
	if err := json.Unmarshal(msg, &o); err != nil {
		f.fail("field %s = %s is not an object", key, msg)
		return nil
	}
	return o
}

// strList reads a list of strings (nil when absent or null).
func (f *fields) strList(key string) []string {
	msg, present, null := f.lookup(key)
	if !present || null {
		return nil
	}
	var v []string
	if err := json.Unmarshal(msg, &v); err != nil {
		f.fail("field %s = %s is not a list of strings", key, msg)
		return nil
	}
	return v
}

// SupportedList is Supported as a sorted, comma-separated string (for messages).
func SupportedList() string {
	s := append([]string(nil), Supported...)
	sort.Strings(s)
	return strings.Join(s, ", ")
}
