package config

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
)

// Real Hub configs (both layouts: as published, and as transformers 5 writes them back) are
// read the way transformers reads them: sizes from its config object, biases and sliding
// windows from the modules of the model it builds.
func TestReadDecoderMatchesTransformers(t *testing.T) {
	out := t.TempDir()
	testutil.RunPython(t, filepath.Join("testdata", "make_decoder_configs.py"), out)
	cases, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 10 {
		t.Fatalf("%d cases made", len(cases))
	}
	for _, c := range cases {
		for _, layout := range []string{"hub", "t5"} {
			t.Run(c.Name()+"/"+layout, func(t *testing.T) {
				b, err := os.ReadFile(filepath.Join(out, c.Name(), "expected.json"))
				if err != nil {
					t.Fatal(err)
				}
				var want Decoder
				if err := json.Unmarshal(b, &want); err != nil {
					t.Fatal(err)
				}
				got, err := ReadDecoder(filepath.Join(out, c.Name(), layout))
				if err != nil {
					t.Fatal(err)
				}
				if len(got.AttnScale) != len(want.AttnScale) {
					t.Fatalf("attention scales %v, want %v", got.AttnScale, want.AttnScale)
				}
				for l := range got.AttnScale {
					if math.Abs(got.AttnScale[l]-want.AttnScale[l]) > 1e-12 {
						t.Fatalf("attention scale of layer %d: %g, want %g", l, got.AttnScale[l], want.AttnScale[l])
					}
				}
				got.AttnScale, want.AttnScale = nil, nil
				if !reflect.DeepEqual(got, want) {
					t.Errorf("got  %+v\nwant %+v (transformers)", got, want)
				}
			})
		}
	}
}

func TestReadDecoderErrors(t *testing.T) {
	llama := `"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 96`
	tests := []struct {
		name string
		json string
		want []string
	}{
		{"unsupported", `{"model_type": "bert"}`, []string{`model_type "bert" is not supported`, "gemma, gpt2, gpt_neox, gptj, llama, mistral, qwen2, qwen3"}},
		{"no model type", `{"hidden_size": 64}`, []string{"model_type is missing", "supported: gemma, gpt2"}},
		{"missing width", `{"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}`,
			[]string{"qwen2 config", "intermediate_size", "missing"}},
		{"kv heads do not divide", `{` + llama + `, "num_key_value_heads": 3}`, []string{"num_key_value_heads = 3"}},
		{"rope type", `{` + llama + `, "rope_scaling": {"type": "dynamic", "factor": 2}}`, []string{"rope_scaling", `"dynamic"`, "llama3"}},
		{"llama3 rope without factors", `{` + llama + `, "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8}}`, []string{"llama3 rope scaling"}},
		{"layer types", `{"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 96, "layer_types": ["full_attention"]}`,
			[]string{"layer_types has 1 entries for 2 layers"}},
		{"odd partial rotary", `{"model_type": "gpt_neox", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 96, "rotary_pct": 0.2}`,
			[]string{"rotary dimension 3"}},
		{"cross attention", `{"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 10, "add_cross_attention": true}`, []string{"add_cross_attention"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDecoder([]byte(tc.json))
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

// FuzzParseDecoder: arbitrary bytes never panic the parser, and a config it accepts validates.
func FuzzParseDecoder(f *testing.F) {
	for _, s := range []string{
		`{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 96, "num_key_value_heads": 2, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 16}}`,
		`{"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 96, "use_sliding_window": true, "sliding_window": 8, "layer_types": ["full_attention", "sliding_attention"]}`,
		`{"model_type": "gpt_neox", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 96, "rope_parameters": {"rope_theta": 10000, "partial_rotary_factor": 0.25}}`,
		`{"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 10, "scale_attn_by_inverse_layer_idx": true}`,
		`{"model_type": "mistral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 96, "sliding_window": null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseDecoder(b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted %s but Validate says %v", b, err)
		}
		if c.Heads%c.KVHeads != 0 || c.RotaryDim > c.HeadDim || len(c.Windows) != c.Layers {
			t.Fatalf("accepted an inconsistent config %+v", c)
		}
	})
}
