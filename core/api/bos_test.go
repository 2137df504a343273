package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrependBOSNeedsTheTokenizersBOS: prepend_bos adds the BOS the tokenizer names; a model
// folder whose tokenizer names none (tokenizer.json alone, no tokenizer_config.json or
// special_tokens_map.json) refuses prepend_bos with an input error that says so, and still
// tokenizes without it.
func TestPrependBOSNeedsTheTokenizersBOS(t *testing.T) {
	src := modelDir(t, "tiny")
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "tokenizer_config.json" || e.Name() == "special_tokens_map.json" || e.IsDir() {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(dir, "cpu", "float32")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	with := call(t, shared(t), "tokenize", map[string]any{"texts": []string{"Hello"}, "prepend_bos": true})
	if ids := with["ids"].([]any)[0].([]any); toInt64(ids[0]) != 50256 {
		t.Fatalf("the bundled tokenizer's BOS: got ids %v, want 50256 first", ids)
	}
	call(t, s, "tokenize", map[string]any{"texts": []string{"Hello"}})
	for _, method := range []string{"tokenize", "evaluate"} {
		req := map[string]any{"texts": []string{"Hello world"}, "prepend_bos": true}
		_, err := Call(t.Context(), s, method, pack(t, req), nil)
		if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), "names no BOS") {
			t.Errorf("%s with prepend_bos and no BOS: %v (status %d), want an input error saying the tokenizer names no BOS", method, err, Status(err))
		}
	}
}
