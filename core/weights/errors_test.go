package weights

import (
	"archive/zip"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyFile copies src to dst, keeping only the first keep bytes when keep >= 0.
func copyFile(t *testing.T, src, dst string, keep int) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if keep >= 0 {
		b = b[:keep]
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the regular files of src into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), -1)
	}
}

// rezip rewrites the zip src into dst; edit returns an entry's new bytes, or false to drop it.
func rezip(t *testing.T, src, dst string, method uint16, edit func(name string, b []byte) ([]byte, bool)) {
	t.Helper()
	zr, err := zip.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	zw := zip.NewWriter(out)
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, f.UncompressedSize64)
		if _, err := rc.Read(b); err != nil && len(b) > 0 && err.Error() != "EOF" {
			t.Fatal(err)
		}
		rc.Close()
		nb, keep := edit(f.Name, b)
		if !keep {
			continue
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(nb); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

// safetensorsFile writes a safetensors file with the given header JSON and data bytes.
func safetensorsFile(t *testing.T, path, header string, data int) {
	t.Helper()
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(append(b, header...), make([]byte, data)...)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	root := fixtures(t)
	tmp := t.TempDir()
	stFile := filepath.Join(root, "st", "model.safetensors")
	binFile := filepath.Join(root, "views", "pytorch_model.bin")
	st, _ := os.Stat(stFile)
	bn, _ := os.Stat(binFile)
	tests := []struct {
		name  string
		setup func(dir string) // makes the broken checkpoint in dir
		want  []string         // substrings of the error (besides the folder name)
	}{
		{"missing dir", func(dir string) { os.RemoveAll(dir) }, []string{"no such file"}},
		{"no weight file", func(dir string) { os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644) },
			[]string{"no weight file", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"}},
		{"broken symlink", func(dir string) { os.Symlink("../../blobs/gone", filepath.Join(dir, "pytorch_model.bin")) },
			[]string{"pytorch_model.bin", "broken symlink"}},
		{"empty safetensors", func(dir string) { copyFile(t, stFile, filepath.Join(dir, "model.safetensors"), 0) },
			[]string{"model.safetensors", "truncated"}},
		{"safetensors cut in the header", func(dir string) { copyFile(t, stFile, filepath.Join(dir, "model.safetensors"), 100) },
			[]string{"model.safetensors", "truncated", "header"}},
		{"safetensors cut in the data", func(dir string) {
			copyFile(t, stFile, filepath.Join(dir, "model.safetensors"), int(st.Size())-10)
		}, []string{"model.safetensors", `tensor "`, "outside"}},
		{"safetensors header size absurd", func(dir string) {
			os.WriteFile(filepath.Join(dir, "model.safetensors"), binary.LittleEndian.AppendUint64(nil, 1<<40), 0o644)
		}, []string{"model.safetensors", "exceeds"}},
		{"safetensors header not JSON", func(dir string) { safetensorsFile(t, filepath.Join(dir, "model.safetensors"), "{oops", 0) },
			[]string{"model.safetensors", "corrupt safetensors header"}},
		{"safetensors bytes do not match dtype×shape", func(dir string) {
			safetensorsFile(t, filepath.Join(dir, "model.safetensors"), `{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}`, 20)
		}, []string{"model.safetensors", `"w"`, "20 bytes", "24"}},
		{"safetensors unknown dtype", func(dir string) {
			safetensorsFile(t, filepath.Join(dir, "model.safetensors"), `{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}}`, 2)
		}, []string{"model.safetensors", `"w"`, "Q4"}},
		{"index names a missing shard", func(dir string) {
			copyDir(t, filepath.Join(root, "st-sharded"), dir)
			os.Remove(filepath.Join(dir, "model-00003-of-00008.safetensors"))
		}, []string{"model.safetensors.index.json", "model-00003-of-00008.safetensors"}},
		{"index names a tensor no shard has", func(dir string) {
			copyDir(t, filepath.Join(root, "bin-sharded"), dir)
			p := filepath.Join(dir, "pytorch_model.bin.index.json")
			var idx map[string]any
			b, _ := os.ReadFile(p)
			json.Unmarshal(b, &idx)
			idx["weight_map"].(map[string]any)["ghost.weight"] = "pytorch_model-00002-of-00003.bin"
			b, _ = json.Marshal(idx)
			os.WriteFile(p, b, 0o644)
		}, []string{"pytorch_model.bin.index.json", "ghost.weight", "pytorch_model-00002-of-00003.bin"}},
		{"index not JSON", func(dir string) { os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte("{"), 0o644) },
			[]string{"model.safetensors.index.json", "bad JSON"}},
		{"truncated zip", func(dir string) { copyFile(t, binFile, filepath.Join(dir, "pytorch_model.bin"), int(bn.Size())*6/10) },
			[]string{"pytorch_model.bin", "corrupt zip"}},
		{"legacy torch format", func(dir string) {
			os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), []byte{0x80, 0x02, 0x8a, 0x0a}, 0o644)
		},
			[]string{"pytorch_model.bin", "legacy"}},
		{"not a torch zip", func(dir string) {
			rezip(t, binFile, filepath.Join(dir, "pytorch_model.bin"), zip.Store, func(name string, b []byte) ([]byte, bool) {
				return b, !strings.HasSuffix(name, "data.pkl")
			})
		}, []string{"pytorch_model.bin", "no <name>/data.pkl"}},
		{"corrupt pickle", func(dir string) {
			rezip(t, binFile, filepath.Join(dir, "pytorch_model.bin"), zip.Store, func(name string, b []byte) ([]byte, bool) {
				if strings.HasSuffix(name, "data.pkl") {
					return b[:len(b)/2], true
				}
				return b, true
			})
		}, []string{"pytorch_model.bin", "data.pkl", "truncated pickle"}},
		{"compressed entries", func(dir string) {
			rezip(t, binFile, filepath.Join(dir, "pytorch_model.bin"), zip.Deflate, func(name string, b []byte) ([]byte, bool) { return b, true })
		}, []string{"pytorch_model.bin", "compressed"}},
		{"storage entry missing", func(dir string) {
			rezip(t, binFile, filepath.Join(dir, "pytorch_model.bin"), zip.Store, func(name string, b []byte) ([]byte, bool) {
				return b, !strings.HasSuffix(name, "/data/1")
			})
		}, []string{"pytorch_model.bin", "storage 1", "missing"}},
		{"storage shorter than its tensor", func(dir string) {
			rezip(t, binFile, filepath.Join(dir, "pytorch_model.bin"), zip.Store, func(name string, b []byte) ([]byte, bool) {
				if strings.HasSuffix(name, "/data/0") {
					return b[:len(b)-4], true
				}
				return b, true
			})
		}, []string{"pytorch_model.bin", "storage 0", "bytes"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(tmp, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			tc.setup(dir)
			s, err := Open(dir)
			if err == nil {
				s.Close()
				t.Fatalf("case %d: Open succeeded", i)
			}
			for _, w := range append([]string{dir}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestMissingKey(t *testing.T) {
	s, err := Open(filepath.Join(fixtures(t), "st"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _, err = s.Bytes("transformer.h.9.attn.q_proj.weight")
	if err == nil || !strings.Contains(err.Error(), "transformer.h.9.attn.q_proj.weight") {
		t.Errorf("error %v does not name the key", err)
	}
	if _, ok := s.Info("nope"); ok {
		t.Errorf("Info found a missing key")
	}
}
