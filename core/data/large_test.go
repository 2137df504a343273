package data

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// syntheticCorpus writes n Pile-format documents to a .jsonl.zst file: mostly short texts
// that pass the paper filter, some too long in words, some too long in characters, with
// multi-byte characters and runs of spaces so that bytes, code points and pieces differ.
func syntheticCorpus(t testing.TB, n int) (path string, size int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := []string{"the", "cat", "Привет", "我们", "🙂", "naïve", "", "x", "fn()", "\"q\"", "a\\b", "tab\there"}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	type doc struct {
		Text string         `json:"text"`
		Meta map[string]any `json:"meta"`
	}
	var sb strings.Builder
	for i := 0; i < n; i++ {
		sb.Reset()
		var words int
		switch r := rng.IntN(10); {
		case r < 7:
			words = 1 + rng.IntN(60)
		case r < 9:
			words = 200 + rng.IntN(100) // around the word bound
		default:
			words = 1 // one long "word": over the character bound
			sb.WriteString(strings.Repeat("я", 1900+rng.IntN(200)))
		}
		for w := 0; w < words; w++ {
			if w > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(vocab[rng.IntN(len(vocab))])
		}
		if err := enc.Encode(doc{sb.String(), map[string]any{"pile_set_name": "Synthetic", "i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	path = filepath.Join(t.TempDir(), "synthetic.jsonl.zst")
	if err := os.WriteFile(path, zstdCompress(t, buf.Bytes()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, buf.Len()
}

// TestPaperPresetOn200kDocs runs the paper preset unchanged (200 000 documents, offset 10 000)
// on a synthetic corpus of 200 000 documents and compares with Python.
func TestPaperPresetOn200kDocs(t *testing.T) {
	path, _ := syntheticCorpus(t, 200000)
	p := mustPreset(t, "paper")
	want := pythonPreset(t, path, p)
	got, err := p.Apply(path)
	if err != nil {
		t.Fatalf("Apply: %v (Python read %d, kept %d)", err, want.Read, want.Kept)
	}
	if want.Read != 200000 || len(want.Docs) != 2000 {
		t.Fatalf("Python read %d and selected %d; the corpus should give 200000 and 2000", want.Read, len(want.Docs))
	}
	compareDocs(t, got, want.Docs)
	t.Logf("read %d, %d passed the filter, selected %d", want.Read, want.Kept, len(got))
}

// BenchmarkPaperPreset measures the paper preset on 200 000 synthetic documents.
func BenchmarkPaperPreset(b *testing.B) {
	path, size := syntheticCorpus(b, 200000)
	p, _ := PresetByName("paper")
	b.SetBytes(int64(size)) // uncompressed JSONL bytes
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Apply(path); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(200000*b.N)/b.Elapsed().Seconds(), "docs/s")
}
