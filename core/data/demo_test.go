package data

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/simplescope/simplescope/internal/testutil"
)

func demoCorpus() string {
	return filepath.Join(testutil.RepoRoot(), "python", "simplescope", "data", "demo.jsonl.zst")
}

func decompressFile(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("decompress %s: %v", path, err)
	}
	return b
}

// TestDemoCorpusIsReproducible regenerates the bundled demo corpus with its script and
// compares the content with the committed file.
func TestDemoCorpusIsReproducible(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo.jsonl.zst")
	src := testutil.CorpusPath()
	script := filepath.Join(testutil.RepoRoot(), "python", "simplescope", "data", "make_demo_corpus.py")
	testutil.RunPython(t, script, "--src", src, "--out", out)
	got, want := decompressFile(t, demoCorpus()), decompressFile(t, out)
	if !bytes.Equal(got, want) {
		n := 0
		for n < len(got) && n < len(want) && got[n] == want[n] {
			n++
		}
		t.Fatalf("committed %s (%d bytes) differs from the script's output (%d bytes) at byte %d: rerun python/simplescope/data/make_demo_corpus.py",
			demoCorpus(), len(got), len(want), n)
	}
}

// TestDemoCorpusPassesSeedPreset: every bundled document passes the seed preset's filter.
func TestDemoCorpusPassesSeedPreset(t *testing.T) {
	st, err := os.Stat(demoCorpus())
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 150<<10 {
		t.Errorf("demo corpus is %d bytes, over the 150 KiB budget", st.Size())
	}
	all, err := ReadFile(demoCorpus(), 0)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := mustPreset(t, "seed").Apply(demoCorpus())
	if err != nil {
		t.Fatal(err)
	}
	want := pythonPreset(t, demoCorpus(), mustPreset(t, "seed"))
	compareDocs(t, sel, want.Docs)
	if len(sel) != len(all) || len(all) < 250 {
		t.Errorf("seed preset keeps %d of %d demo documents; want all of about 300", len(sel), len(all))
	}
}
