package data

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/simplescope/simplescope/internal/testutil"
)

// refResult is the output of testdata/preset_ref.py.
type refResult struct {
	Read int   `json:"read"`
	Kept int   `json:"kept"`
	Docs []Doc `json:"docs"`
}

// pythonPreset runs the Python reimplementation of preset p on path.
func pythonPreset(t *testing.T, path string, p Preset) refResult {
	t.Helper()
	args := []string{path,
		"--max-docs", strconv.Itoa(p.MaxDocs),
		"--max-words", strconv.Itoa(p.MaxWords),
		"--max-chars", strconv.Itoa(p.MaxChars),
		"--seed", strconv.FormatInt(p.Seed, 10),
		"--skip", strconv.Itoa(p.Skip),
		"--take", strconv.Itoa(p.Take),
	}
	if p.Shuffle {
		args = append(args, "--shuffle")
	}
	var ref refResult
	out := testutil.RunPython(t, filepath.Join("testdata", "preset_ref.py"), args...)
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatalf("decode preset_ref.py output: %v", err)
	}
	return ref
}

// compareDocs fails with the first mismatch between got and the Python reference.
func compareDocs(t *testing.T, got, want []Doc) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d documents, Python %d", len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		g, w := got[i], want[i]
		if g.Index != w.Index || g.Line != w.Line || g.Text != w.Text {
			t.Fatalf("first mismatch at %d: got index %d line %d text %.60q; Python index %d line %d text %.60q",
				i, g.Index, g.Line, g.Text, w.Index, w.Line, w.Text)
		}
	}
}

// writeFile writes content under dir, Zstandard-compressing it when the name ends in .zst.
func writeFile(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if filepath.Ext(name) == ".zst" {
		content = zstdCompress(t, content)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func zstdCompress(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}
