package gptj

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// readConfig is a placeholder until core/weights' config reader lands.
func readConfig(dir string) (Config, error) {
	path := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	var raw struct {
		ModelType  string   `json:"model_type"`
		NEmbd      int      `json:"n_embd"`
		NLayer     int      `json:"n_layer"`
		NHead      int      `json:"n_head"`
		RotaryDim  *int     `json:"rotary_dim"`
		Vocab      int      `json:"vocab_size"`
		NPos       int      `json:"n_positions"`
		NInner     *int     `json:"n_inner"`
		Eps        *float64 `json:"layer_norm_epsilon"`
		Act        string   `json:"activation_function"`
		BOS        *int     `json:"bos_token_id"`
		EOS        *int     `json:"eos_token_id"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if raw.ModelType != "gptj" {
		return Config{}, fmt.Errorf("%s: model_type is %q, not \"gptj\"", path, raw.ModelType)
	}
	c := Config{NEmbd: raw.NEmbd, NLayer: raw.NLayer, NHead: raw.NHead, VocabSize: raw.Vocab, NPositions: raw.NPos, Activation: raw.Act, LayerNormEps: 1e-5, BOS: 50256, EOS: 50256}
	if raw.RotaryDim != nil {
		c.RotaryDim = *raw.RotaryDim
	}
	if raw.NInner != nil {
		c.NInner = *raw.NInner
	}
	if raw.Eps != nil {
		c.LayerNormEps = *raw.Eps
	}
	if raw.BOS != nil {
		c.BOS = *raw.BOS
	}
	if raw.EOS != nil {
		c.EOS = *raw.EOS
	}
	return c, nil
}
