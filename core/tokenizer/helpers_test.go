package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/simplescope/simplescope/internal/testutil"
)

// fixtureDir is the GPT-J tokenizer in HF layout.
func fixtureDir() string {
	return testutil.TokenizerDir()
}

func fixtureJSON() string { return filepath.Join(fixtureDir(), "tokenizer.json") }

var (
	gptjOnce sync.Once
	gptjTok  *Tokenizer
	gptjErr  error
)

// gptj loads the fixture tokenizer once per test binary.
func gptj(t testing.TB) *Tokenizer {
	t.Helper()
	gptjOnce.Do(func() { gptjTok, gptjErr = Load(fixtureDir()) })
	if gptjErr != nil {
		t.Fatalf("Load(%s): %v", fixtureDir(), gptjErr)
	}
	return gptjTok
}

var (
	corpusOnce  sync.Once
	corpusTexts []string
	corpusErr   error
)

// corpus returns the "text" of every document of testdata/corpus/sample.jsonl.zst (the repository's real-text sample).
func corpus(t testing.TB) []string {
	t.Helper()
	corpusOnce.Do(func() {
		path := testutil.CorpusPath()
		f, err := os.Open(path)
		if err != nil {
			corpusErr = err
			return
		}
		defer f.Close()
		zr, err := zstd.NewReader(f)
		if err != nil {
			corpusErr = err
			return
		}
		defer zr.Close()
		sc := bufio.NewScanner(zr)
		sc.Buffer(make([]byte, 1<<20), 1<<28)
		for sc.Scan() {
			var doc struct {
				Text string `json:"text"`
			}
			if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
				corpusErr = err
				return
			}
			corpusTexts = append(corpusTexts, doc.Text)
		}
		corpusErr = sc.Err()
	})
	if corpusErr != nil {
		t.Fatalf("read corpus: %v", corpusErr)
	}
	if len(corpusTexts) == 0 {
		t.Fatal("corpus is empty")
	}
	return corpusTexts
}

// writeTexts writes texts as JSON lines {"text": ...} into a temp file and returns its path.
func writeTexts(t testing.TB, texts []string) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, s := range texts {
		if err := enc.Encode(map[string]string{"text": s}); err != nil {
			t.Fatalf("encode text %q: %v", s, err)
		}
	}
	p := filepath.Join(t.TempDir(), "texts.jsonl")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// hf runs testdata/hf_encode.py in mode over texts and decodes one JSON value per text into out
// (a pointer to a slice).
func hf(t testing.TB, mode, tokJSON string, texts []string, out any) {
	t.Helper()
	raw := testutil.RunPython(t, filepath.Join("testdata", "hf_encode.py"), mode, tokJSON, writeTexts(t, texts))
	dec := json.NewDecoder(bytes.NewReader(raw))
	var all []json.RawMessage
	for dec.More() {
		var m json.RawMessage
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("hf_encode.py %s output: %v", mode, err)
		}
		all = append(all, m)
	}
	if len(all) != len(texts) {
		t.Fatalf("hf_encode.py %s: %d results for %d texts", mode, len(all), len(texts))
	}
	joined, _ := json.Marshal(all)
	if err := json.Unmarshal(joined, out); err != nil {
		t.Fatalf("hf_encode.py %s output: %v", mode, err)
	}
}

// firstDiff returns the first index where a and b differ, or -1.
func firstDiff(a, b []int) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// window returns ids[i-3 : i+4] clipped, for failure messages.
func window(ids []int, i int) []int {
	return ids[max(0, i-3):min(len(ids), i+4)]
}
