package weights

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"
	"unsafe"

	"github.com/simplescope/simplescope/internal/testutil"
)

// manifestEntry is what make_ckpt.py reports Python read back for one tensor.
type manifestEntry struct {
	DType  string  `json:"dtype"`
	Shape  []int64 `json:"shape"`
	SHA256 string  `json:"sha256"`
}

var (
	fixturesOnce sync.Once
	fixturesDir  string
	fixturesErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixturesDir != "" {
		os.RemoveAll(fixturesDir)
	}
	os.Exit(code)
}

// fixtures runs make_ckpt.py once per test binary and returns its output folder.
func fixtures(t *testing.T) string {
	t.Helper()
	fixturesOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weights-fixtures-")
		if err != nil {
			fixturesErr = err
			return
		}
		fixturesDir = dir
		ok := t.Run("make_ckpt", func(t *testing.T) {
			testutil.RunPython(t, filepath.Join("testdata", "make_ckpt.py"), dir, "all")
		})
		if !ok {
			fixturesErr = fmt.Errorf("make_ckpt.py failed")
		}
	})
	if fixturesErr != nil {
		t.Fatalf("fixtures: %v", fixturesErr)
	}
	return fixturesDir
}

func readManifest(t *testing.T, path string) map[string]manifestEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]manifestEntry
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// inMapping reports whether b lies inside one of the store's memory-mapped files.
func inMapping(s *Store, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	for _, f := range s.files {
		if len(f.data) == 0 {
			continue
		}
		start := uintptr(unsafe.Pointer(unsafe.SliceData(f.data)))
		if p >= start && p+uintptr(len(b)) <= start+uintptr(len(f.data)) {
			return true
		}
	}
	return false
}

func TestMatchesPython(t *testing.T) {
	root := fixtures(t)
	snapshot := filepath.Join(root, "cache", "models--test--tiny-gptj", "snapshots", "0123456789abcdef0123456789abcdef01234567")
	tests := []struct {
		name     string
		open     string // what Open is given
		manifest string
		format   string
		files    int
		copied   []string // tensors expected to be gathered (non-contiguous views)
	}{
		{"safetensors", filepath.Join(root, "st"), "st", "safetensors", 1, nil},
		{"safetensors sharded", filepath.Join(root, "st-sharded"), "st-sharded", "safetensors", 8, nil},
		{"safetensors dtypes", filepath.Join(root, "st-dtypes"), "st-dtypes", "safetensors", 1, nil},
		{"safetensors single file", filepath.Join(root, "st", "model.safetensors"), "st", "safetensors", 1, nil},
		{"bin", filepath.Join(root, "bin"), "bin", "pytorch", 1, nil},
		{"bin sharded", filepath.Join(root, "bin-sharded"), "bin-sharded", "pytorch", 3, nil},
		{"bin views", filepath.Join(root, "views"), "views", "pytorch", 1, []string{"col_3", "expanded", "transposed"}},
		{"bin views pickle protocol 4", filepath.Join(root, "views-p4"), "views-p4", "pytorch", 1, []string{"col_3", "expanded", "transposed"}},
		{"hf cache snapshot (symlinks)", snapshot, "cache", "pytorch", 1, nil},
		{"hf cache repo (refs/main)", filepath.Join(root, "cache", "models--test--tiny-gptj"), "cache", "pytorch", 1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := readManifest(t, filepath.Join(root, tc.manifest, "manifest.json"))
			s, err := Open(tc.open)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Format() != tc.format || len(s.files) != tc.files {
				t.Errorf("format %s with %d files, want %s with %d", s.Format(), len(s.files), tc.format, tc.files)
			}
			wantKeys := make([]string, 0, len(want))
			for k := range want {
				wantKeys = append(wantKeys, k)
			}
			sort.Strings(wantKeys)
			if got := s.Keys(); !reflect.DeepEqual(got, wantKeys) {
				t.Fatalf("keys:\n got %v\nwant %v", got, wantKeys)
			}
			var copied []string
			for _, k := range wantKeys {
				w := want[k]
				b, info, err := s.Bytes(k)
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				if info.DType.String() != w.DType || !reflect.DeepEqual(info.Shape, w.Shape) {
					t.Errorf("%s: %s %v, python says %s %v", k, info.DType, info.Shape, w.DType, w.Shape)
				}
				if int64(len(b)) != info.NumBytes() {
					t.Errorf("%s: %d bytes, want %d", k, len(b), info.NumBytes())
				}
				sum := sha256.Sum256(b)
				if got := hex.EncodeToString(sum[:]); got != w.SHA256 {
					t.Errorf("%s: sha256 %s, python says %s (first bytes % x)", k, got, w.SHA256, b[:min(len(b), 16)])
				}
				if !inMapping(s, b) {
					copied = append(copied, k)
				}
				if i2, ok := s.Info(k); !ok || !reflect.DeepEqual(i2, info) {
					t.Errorf("%s: Info %+v differs from Bytes' %+v", k, i2, info)
				}
			}
			if !reflect.DeepEqual(copied, tc.copied) {
				t.Errorf("tensors not served from the mapping: %v, want %v", copied, tc.copied)
			}
		})
	}
}

func TestSharedStorageIsShared(t *testing.T) {
	s, err := Open(filepath.Join(fixtures(t), "views"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base, _, err := s.Bytes("base")
	if err != nil {
		t.Fatal(err)
	}
	rows, _, err := s.Bytes("rows_2_4")
	if err != nil {
		t.Fatal(err)
	}
	// rows_2_4 = base[2:4] of a (6, 8) float32 tensor: 16 elements in, the same memory.
	if unsafe.SliceData(rows) != &base[16*4] {
		t.Errorf("rows_2_4 is not a view into base's storage")
	}
	again, _, _ := s.Bytes("transposed")
	first, _, _ := s.Bytes("transposed")
	if unsafe.SliceData(again) != unsafe.SliceData(first) {
		t.Errorf("a non-contiguous tensor was gathered twice")
	}
}

func TestAttentionBuffers(t *testing.T) {
	s, err := Open(filepath.Join(fixtures(t), "bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var buffers []string
	for _, k := range s.Keys() {
		if IsAttentionBuffer(k) {
			buffers = append(buffers, k)
		}
	}
	want := []string{"transformer.h.0.attn.bias", "transformer.h.0.attn.masked_bias",
		"transformer.h.1.attn.bias", "transformer.h.1.attn.masked_bias"}
	if !reflect.DeepEqual(buffers, want) {
		t.Errorf("attention buffers %v, want %v", buffers, want)
	}
}

func TestClosedStore(t *testing.T) {
	s, err := Open(filepath.Join(fixtures(t), "st"))
	if err != nil {
		t.Fatal(err)
	}
	k := s.Keys()[0]
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := s.Bytes(k); err == nil {
		t.Errorf("Bytes after Close succeeded")
	}
}
