package config

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// GPTJConfig holds the fields of an HF GPT-J config.json that the engine needs.
type GPTJConfig struct {
	NEmbd              int     // n_embd: model width (hidden_size)
	NLayer             int     // n_layer: number of blocks
	NHead              int     // n_head: attention heads
	RotaryDim          int     // rotary_dim: leading dimensions of each head that get rotary embeddings
	VocabSize          int     // vocab_size
	NPositions         int     // n_positions: context length
	NInner             int     // n_inner: MLP width (null → 4*n_embd)
	LayerNormEpsilon   float64 // layer_norm_epsilon
	ActivationFunction string  // activation_function ("gelu_new" in GPT-J)
	BOSTokenID         int     // bos_token_id (-1 when null)
	EOSTokenID         int     // eos_token_id (the first one when a list; -1 when null)
	ModelType          string  // model_type, always "gptj"
	TieWordEmbeddings  bool    // tie_word_embeddings
}

// HeadDim returns n_embd / n_head.
func (c GPTJConfig) HeadDim() int { return c.NEmbd / c.NHead }

// ReadGPTJConfig reads dir/config.json (dir may also be the file itself). Optional fields take
// transformers' GPTJConfig defaults: n_positions 2048, n_inner null → 4*n_embd, rotary_dim 64
// (null → the whole head, n_embd/n_head), layer_norm_epsilon 1e-5, activation_function
// "gelu_new", bos/eos 50256, tie_word_embeddings false.
func ReadGPTJConfig(dir string) (GPTJConfig, error) {
	path := dir
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		path = filepath.Join(dir, "config.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return GPTJConfig{}, fmt.Errorf("read GPT-J config: %w", err)
	}
	c, err := ParseGPTJConfig(b)
	if err != nil {
		return GPTJConfig{}, fmt.Errorf("read GPT-J config %s: %w", path, err)
	}
	return c, nil
}

// ParseGPTJConfig parses the bytes of a config.json with the rules of ReadGPTJConfig. Errors do
// not name a file; ReadGPTJConfig adds it.
func ParseGPTJConfig(b []byte) (GPTJConfig, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return GPTJConfig{}, fmt.Errorf("bad JSON: %w", err)
	}
	if raw == nil {
		return GPTJConfig{}, fmt.Errorf("not a JSON object")
	}
	return parseGPTJ(raw)
}

// fields reads typed values out of the raw JSON object, remembering the first error.
type fields struct {
	raw map[string]json.RawMessage
	err error
}

func (f *fields) fail(format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf(format, args...)
	}
}

// isNull reports whether key is absent (present=false) or explicitly null.
func (f *fields) lookup(key string) (msg json.RawMessage, present, null bool) {
	msg, present = f.raw[key]
	return msg, present, present && string(msg) == "null"
}

// integer reads an integral JSON number (2048 or 2048.0); def is used when absent or null,
// and a required field must be present and not null.
func (f *fields) integer(key string, def int, required bool) int {
	msg, present, null := f.lookup(key)
	if !present || null {
		if required {
			f.fail("required field %s is missing", key)
		}
		return def
	}
	var v float64
	if err := json.Unmarshal(msg, &v); err != nil || v != math.Trunc(v) || math.Abs(v) > 1<<53 {
		f.fail("field %s = %s is not an integer", key, msg)
		return def
	}
	return int(v)
}

func (f *fields) str(key, def string) string {
	msg, present, null := f.lookup(key)
	if !present || null {
		return def
	}
	var s string
	if err := json.Unmarshal(msg, &s); err != nil {
		f.fail("field %s = %s is not a string", key, msg)
	}
	return s
}

func (f *fields) number(key string, def float64) float64 {
	msg, present, null := f.lookup(key)
	if !present || null {
		return def
	}
	var v float64
	if err := json.Unmarshal(msg, &v); err != nil {
		f.fail("field %s = %s is not a number", key, msg)
	}
	return v
}

func (f *fields) boolean(key string, def bool) bool {
	msg, present, null := f.lookup(key)
	if !present || null {
		return def
	}
	var v bool
	if err := json.Unmarshal(msg, &v); err != nil {
		f.fail("field %s = %s is not a boolean", key, msg)
	}
	return v
}

// tokenID reads an id that may be null (-1) or, for eos_token_id, a list (its first id).
func (f *fields) tokenID(key string, def int) int {
	msg, present, null := f.lookup(key)
	if !present {
		return def
	}
	if null {
		return -1
	}
	var list []json.RawMessage
	if json.Unmarshal(msg, &list) == nil {
		if len(list) == 0 {
			return -1
		}
		f.raw[key] = list[0]
	}
	return f.integer(key, def, false)
}

func parseGPTJ(raw map[string]json.RawMessage) (GPTJConfig, error) {
	f := &fields{raw: raw}
	c := GPTJConfig{ModelType: f.str("model_type", "")}
	if f.err == nil && c.ModelType != "gptj" {
		if c.ModelType == "" {
			return c, fmt.Errorf("model_type is missing, want \"gptj\"")
		}
		return c, fmt.Errorf("model_type is %q, not \"gptj\"", c.ModelType)
	}
	c.NEmbd = f.integer("n_embd", 0, true)
	c.NLayer = f.integer("n_layer", 0, true)
	c.NHead = f.integer("n_head", 0, true)
	c.VocabSize = f.integer("vocab_size", 0, true)
	c.NPositions = f.integer("n_positions", 2048, false)
	c.NInner = f.integer("n_inner", 4*c.NEmbd, false)
	c.LayerNormEpsilon = f.number("layer_norm_epsilon", 1e-5)
	c.ActivationFunction = f.str("activation_function", "gelu_new")
	c.BOSTokenID = f.tokenID("bos_token_id", 50256)
	c.EOSTokenID = f.tokenID("eos_token_id", 50256)
	c.TieWordEmbeddings = f.boolean("tie_word_embeddings", false)
	if f.err != nil {
		return c, f.err
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"n_embd", c.NEmbd}, {"n_layer", c.NLayer}, {"n_head", c.NHead}, {"vocab_size", c.VocabSize},
		{"n_positions", c.NPositions}, {"n_inner", c.NInner}} {
		if p.v <= 0 {
			return c, fmt.Errorf("field %s = %d must be positive", p.name, p.v)
		}
	}
	if c.NEmbd%c.NHead != 0 {
		return c, fmt.Errorf("n_embd = %d is not divisible by n_head = %d", c.NEmbd, c.NHead)
	}
	if _, _, null := f.lookup("rotary_dim"); null {
		c.RotaryDim = c.HeadDim()
	} else {
		c.RotaryDim = f.integer("rotary_dim", 64, false)
	}
	if f.err != nil {
		return c, f.err
	}
	if c.RotaryDim <= 0 || c.RotaryDim%2 != 0 || c.RotaryDim > c.HeadDim() {
		return c, fmt.Errorf("rotary_dim = %d must be even and in 2…head_dim (%d)", c.RotaryDim, c.HeadDim())
	}
	if !(c.LayerNormEpsilon > 0) {
		return c, fmt.Errorf("layer_norm_epsilon = %g must be positive", c.LayerNormEpsilon)
	}
	return c, nil
}
