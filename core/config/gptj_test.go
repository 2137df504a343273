package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
)

func TestReadGPTJConfigMatchesTransformers(t *testing.T) {
	out := t.TempDir()
	testutil.RunPython(t, filepath.Join("testdata", "make_configs.py"), out)
	for _, name := range []string{"gptj-6b-defaults", "tiny", "eos-list", "minimal"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(out, name, "expected.json"))
			if err != nil {
				t.Fatal(err)
			}
			var want GPTJConfig
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			got, err := ReadGPTJConfig(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("got  %+v\nwant %+v (transformers)", got, want)
			}
		})
	}
}

func TestReadGPTJConfigRules(t *testing.T) {
	base := `"model_type": "gptj", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 10`
	tests := []struct {
		name string
		json string
		want func(c GPTJConfig) bool
	}{
		// HF's GPTJRotaryEmbedding uses `rotary_dim or hidden_size`, which only runs when it
		// equals the head; a null rotary_dim means rotary over the whole head.
		{"rotary_dim null", `{` + base + `, "rotary_dim": null}`, func(c GPTJConfig) bool { return c.RotaryDim == c.NEmbd/c.NHead }},
		{"n_inner null", `{` + base + `, "rotary_dim": 8, "n_inner": null}`, func(c GPTJConfig) bool { return c.NInner == 4*c.NEmbd }},
		{"integral float", `{` + base + `, "rotary_dim": 8.0}`, func(c GPTJConfig) bool { return c.RotaryDim == 8 }},
		{"null token ids", `{` + base + `, "rotary_dim": 8, "bos_token_id": null, "eos_token_id": null}`,
			func(c GPTJConfig) bool { return c.BOSTokenID == -1 && c.EOSTokenID == -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tc.json), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := ReadGPTJConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(c) {
				t.Errorf("%s gave %+v", tc.json, c)
			}
		})
	}
}

func TestReadGPTJConfigErrors(t *testing.T) {
	base := `"model_type": "gptj", "n_layer": 2, "vocab_size": 10`
	tests := []struct {
		name string
		json string // "" = no file
		want []string
	}{
		{"missing file", "", []string{"config.json", "no such file"}},
		{"bad JSON", `{"model_type": "gptj",`, []string{"config.json", "bad JSON"}},
		{"not an object", `[1, 2]`, []string{"config.json", "bad JSON"}},
		{"wrong model type", `{"model_type": "gpt2", "n_embd": 64}`, []string{"config.json", `"gpt2"`, "gptj"}},
		{"no model type", `{"n_embd": 64}`, []string{"model_type is missing"}},
		{"missing n_embd", `{` + base + `, "n_head": 4}`, []string{"n_embd", "missing"}},
		{"n_head not a number", `{` + base + `, "n_embd": 64, "n_head": "4"}`, []string{"n_head", "not an integer"}},
		{"fractional n_layer", `{"model_type": "gptj", "n_embd": 64, "n_head": 4, "n_layer": 2.5, "vocab_size": 10}`, []string{"n_layer", "not an integer"}},
		{"zero vocab", `{"model_type": "gptj", "n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 0}`, []string{"vocab_size", "positive"}},
		{"heads do not divide", `{` + base + `, "n_embd": 64, "n_head": 5}`, []string{"n_embd = 64", "n_head = 5"}},
		{"rotary too large (default 64 > head 16)", `{` + base + `, "n_embd": 64, "n_head": 4}`, []string{"rotary_dim = 64", "16"}},
		{"rotary odd", `{` + base + `, "n_embd": 64, "n_head": 4, "rotary_dim": 7}`, []string{"rotary_dim = 7"}},
		{"epsilon wrong type", `{` + base + `, "n_embd": 64, "n_head": 4, "rotary_dim": 8, "layer_norm_epsilon": "x"}`, []string{"layer_norm_epsilon"}},
		{"tie not bool", `{` + base + `, "n_embd": 64, "n_head": 4, "rotary_dim": 8, "tie_word_embeddings": 1}`, []string{"tie_word_embeddings"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.json != "" {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tc.json), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := ReadGPTJConfig(dir)
			if err == nil {
				t.Fatalf("%s: no error", tc.json)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
