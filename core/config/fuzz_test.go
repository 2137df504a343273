package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// hfJSON writes c back as an HF config.json (the inverse of ParseGPTJConfig for a valid config).
func hfJSON(t *testing.T, c GPTJConfig) []byte {
	t.Helper()
	id := func(v int) any {
		if v < 0 {
			return nil
		}
		return v
	}
	b, err := json.Marshal(map[string]any{
		"model_type": c.ModelType, "n_embd": c.NEmbd, "n_layer": c.NLayer, "n_head": c.NHead,
		"rotary_dim": c.RotaryDim, "vocab_size": c.VocabSize, "n_positions": c.NPositions,
		"n_inner": c.NInner, "layer_norm_epsilon": c.LayerNormEpsilon,
		"activation_function": c.ActivationFunction, "bos_token_id": id(c.BOSTokenID),
		"eos_token_id": id(c.EOSTokenID), "tie_word_embeddings": c.TieWordEmbeddings,
	})
	if err != nil {
		t.Fatalf("marshal %+v: %v", c, err)
	}
	return b
}

// FuzzParseGPTJConfig feeds arbitrary bytes to the config.json parser: it must never panic; a
// config it accepts must satisfy the engine's invariants and survive a write-back round trip;
// ReadGPTJConfig on a file with the same bytes must agree. `go test -fuzz FuzzParseGPTJConfig`
// explores further.
func FuzzParseGPTJConfig(f *testing.F) {
	seeds := []map[string]any{
		{"model_type": "gptj", "n_embd": 4096, "n_layer": 28, "n_head": 16, "rotary_dim": 64, "vocab_size": 50400,
			"n_positions": 2048, "n_inner": nil, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
			"bos_token_id": 50256, "eos_token_id": 50256, "tie_word_embeddings": false},
		{"model_type": "gptj", "n_embd": 40, "n_layer": 4, "n_head": 5, "rotary_dim": 4, "vocab_size": 211},
		{"model_type": "gptj", "n_embd": 64, "n_layer": 2, "n_head": 4, "rotary_dim": nil, "vocab_size": 10,
			"eos_token_id": []int{3, 4}, "bos_token_id": nil, "n_inner": 100.0},
		{"model_type": "gpt2", "n_embd": 64},
	}
	for _, s := range seeds {
		b, err := json.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`[1, 2]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseGPTJConfig(b)
		dir := t.TempDir()
		if werr := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); werr != nil {
			t.Fatal(werr)
		}
		c2, err2 := ReadGPTJConfig(dir)
		if (err == nil) != (err2 == nil) || (err == nil && c != c2) {
			t.Fatalf("ParseGPTJConfig = %+v, %v but ReadGPTJConfig = %+v, %v", c, err, c2, err2)
		}
		if err != nil {
			return
		}
		if c.NEmbd <= 0 || c.NLayer <= 0 || c.NHead <= 0 || c.VocabSize <= 0 || c.NPositions <= 0 || c.NInner <= 0 ||
			c.NEmbd%c.NHead != 0 || c.RotaryDim <= 0 || c.RotaryDim%2 != 0 || c.RotaryDim > c.HeadDim() ||
			!(c.LayerNormEpsilon > 0) || c.ModelType != "gptj" {
			t.Fatalf("accepted an invalid config %+v from %q", c, b)
		}
		back, err := ParseGPTJConfig(hfJSON(t, c))
		if err != nil || back != c {
			t.Fatalf("round trip of %+v gave %+v, %v", c, back, err)
		}
	})
}
