// Package testutil holds helpers shared by the Go tests: locating the repository root, the
// project's Python interpreter (used to compute independent references with HF transformers and
// HF tokenizers) and the test data the repository ships (testdata/README.md).
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// RepoRoot returns the repository root (the folder holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Python returns the interpreter that has the reference packages (torch, transformers,
// tokenizers, safetensors): $SIMPLESCOPE_PYTHON, else <repo>/.venv/bin/python. A missing
// interpreter fails the test (it is never a skip): run `make venv` first.
func Python(t testing.TB) string {
	t.Helper()
	p := os.Getenv("SIMPLESCOPE_PYTHON")
	if p == "" {
		p = filepath.Join(RepoRoot(), ".venv", "bin", "python")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("reference Python interpreter %s not found (%v): run `make venv` or set SIMPLESCOPE_PYTHON", p, err)
	}
	return p
}

// RunPython runs a Python script file with arguments and returns its stdout; stderr is shown on
// failure.
func RunPython(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(Python(t), append([]string{script}, args...)...)
	var stderr []byte
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	if err != nil {
		t.Fatalf("python %s %v: %v\n%s", script, args, err, stderr)
	}
	return out
}

// CorpusPath returns the real-text sample corpus the parity tests read:
// <repo>/testdata/corpus/sample.jsonl.zst (provenance and licences in testdata/README.md).
func CorpusPath() string {
	return filepath.Join(RepoRoot(), "testdata", "corpus", "sample.jsonl.zst")
}

// TokenizerDir returns the GPT-J tokenizer files the Python package ships (HF layout:
// tokenizer.json, vocab.json, merges.txt, ...).
func TokenizerDir() string {
	return filepath.Join(RepoRoot(), "python", "simplescope", "data", "tokenizer")
}
