package weights

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Info describes one stored tensor. Shape is row-major; File is the path of the file holding
// it (as found in the folder, before symlinks are followed).
type Info struct {
	Name  string
	DType DType
	Shape []int64
	File  string
}

// NumBytes returns the tensor's size in bytes.
func (i Info) NumBytes() int64 {
	n, _ := numElements(i.Shape)
	return n * int64(i.DType.Size())
}

// tensorRecord locates a tensor's bytes: a storage of storageLen bytes at base in file, the
// tensor starting elemOffset elements into it, row-major unless strides is set.
type tensorRecord struct {
	info       Info
	file       int
	base       int64
	storageLen int64
	elemOffset int64
	strides    []int64
}

type mappedFile struct {
	path  string
	data  []byte
	unmap func() error
}

// Store is an open checkpoint: an index of its tensors over memory-mapped files. Its methods
// may be called from several goroutines.
type Store struct {
	dir     string
	format  string
	files   []*mappedFile
	tensors map[string]*tensorRecord
	keys    []string

	mu     sync.Mutex
	closed bool
	copies map[string][]byte // non-contiguous tensors, gathered once
}

// Candidate file names, in order of preference.
var weightFiles = []string{
	"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
}

// Open indexes the weights in dir: a model folder, an HF cache snapshot folder, an HF cache
// repository folder (models--org--name, resolved through refs/main), or one weight file.
// It maps the files but reads only their headers.
func Open(dir string) (*Store, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open weights: %w", err)
	}
	if st.Mode().IsRegular() {
		return openFiles(filepath.Dir(dir), "", []string{dir}, nil)
	}
	if snap, ok := resolveCacheRepo(dir); ok {
		dir = snap
	}
	for _, name := range weightFiles {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				if _, lerr := os.Lstat(p); lerr == nil {
					return nil, fmt.Errorf("open weights: %s is a broken symlink: %w", p, err)
				}
				continue
			}
			return nil, fmt.Errorf("open weights: %w", err)
		}
		if strings.HasSuffix(name, ".index.json") {
			shards, wmap, err := readIndex(p)
			if err != nil {
				return nil, err
			}
			return openFiles(dir, p, shards, wmap)
		}
		return openFiles(dir, "", []string{p}, nil)
	}
	return nil, fmt.Errorf("open weights: no weight file in %s (looked for %s)", dir, strings.Join(weightFiles, ", "))
}

// resolveCacheRepo maps an HF cache repository folder (with refs/main and snapshots/) to the
// snapshot refs/main names.
func resolveCacheRepo(dir string) (string, bool) {
	ref, err := os.ReadFile(filepath.Join(dir, "refs", "main"))
	if err != nil {
		return "", false
	}
	rev := strings.TrimSpace(string(ref))
	if rev == "" || strings.ContainsAny(rev, `/\`) {
		return "", false
	}
	snap := filepath.Join(dir, "snapshots", rev)
	if st, err := os.Stat(snap); err != nil || !st.IsDir() {
		return "", false
	}
	return snap, true
}

// readIndex reads an HF index.json and returns its shard paths (sorted) and weight map.
func readIndex(path string) ([]string, map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open weights: %w", err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, nil, fmt.Errorf("open weights: %s: bad JSON: %w", path, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, nil, fmt.Errorf("open weights: %s: empty or missing weight_map", path)
	}
	dir := filepath.Dir(path)
	set := map[string]bool{}
	for key, f := range idx.WeightMap {
		if f == "" || filepath.IsAbs(f) || strings.Contains(f, "..") {
			return nil, nil, fmt.Errorf("open weights: %s: tensor %q: bad shard name %q", path, key, f)
		}
		set[f] = true
	}
	shards := make([]string, 0, len(set))
	for f := range set {
		p := filepath.Join(dir, f)
		if _, err := os.Stat(p); err != nil {
			return nil, nil, fmt.Errorf("open weights: %s names shard %s: %w", path, f, err)
		}
		shards = append(shards, p)
	}
	sort.Strings(shards)
	wmap := make(map[string]string, len(idx.WeightMap))
	for key, f := range idx.WeightMap {
		wmap[key] = filepath.Join(dir, f)
	}
	return shards, wmap, nil
}

// openFiles maps and indexes the given files. wmap, when set, is the index's key → file map,
// checked against what the files hold.
func openFiles(dir, index string, paths []string, wmap map[string]string) (*Store, error) {
	s := &Store{dir: dir, tensors: map[string]*tensorRecord{}, copies: map[string][]byte{}}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	for i, p := range paths {
		data, unmap, err := mapFile(p)
		if err != nil {
			return nil, fmt.Errorf("open weights: %w", err)
		}
		s.files = append(s.files, &mappedFile{path: p, data: data, unmap: unmap})
		format := "safetensors"
		var recs []tensorRecord
		if isTorchFile(p, data) {
			format = "pytorch"
			recs, err = parseTorchZip(data)
		} else {
			recs, err = parseSafetensors(data)
		}
		if err != nil {
			return nil, fmt.Errorf("open weights: %s: %w", p, err)
		}
		if s.format != "" && s.format != format {
			return nil, fmt.Errorf("open weights: %s is %s but earlier shards are %s", p, format, s.format)
		}
		s.format = format
		for j := range recs {
			r := &recs[j]
			r.file, r.info.File = i, p
			if prev, ok := s.tensors[r.info.Name]; ok {
				return nil, fmt.Errorf("open weights: tensor %q is in both %s and %s", r.info.Name, prev.info.File, p)
			}
			if wmap != nil {
				if want, ok := wmap[r.info.Name]; ok && want != p {
					return nil, fmt.Errorf("open weights: %s: tensor %q is in %s but the index puts it in %s", index, r.info.Name, p, want)
				}
			}
			s.tensors[r.info.Name] = r
		}
	}
	for key, f := range wmap {
		if _, ok := s.tensors[key]; !ok {
			return nil, fmt.Errorf("open weights: %s: tensor %q is missing from shard %s", index, key, f)
		}
	}
	s.keys = make([]string, 0, len(s.tensors))
	for k := range s.tensors {
		s.keys = append(s.keys, k)
	}
	sort.Strings(s.keys)
	ok = true
	return s, nil
}

// isTorchFile tells a torch.save file (a zip, or the legacy pickle) from safetensors.
func isTorchFile(path string, data []byte) bool {
	if strings.HasSuffix(path, ".safetensors") {
		return false
	}
	if strings.HasSuffix(path, ".bin") || strings.HasSuffix(path, ".pt") || strings.HasSuffix(path, ".pth") {
		return true
	}
	return len(data) >= 4 && (binary.LittleEndian.Uint32(data) == 0x04034b50 || data[0] == 0x80)
}

// Format returns "safetensors" or "pytorch".
func (s *Store) Format() string { return s.format }

// Dir returns the folder the weights were found in (a snapshot folder for an HF cache repo).
func (s *Store) Dir() string { return s.dir }

// Keys returns the tensor names, sorted.
func (s *Store) Keys() []string { return append([]string(nil), s.keys...) }

// Info describes a tensor without reading it.
func (s *Store) Info(name string) (Info, bool) {
	r, ok := s.tensors[name]
	if !ok {
		return Info{}, false
	}
	info := r.info
	info.Shape = append([]int64{}, info.Shape...)
	return info, true
}

// Bytes returns a tensor's contiguous little-endian row-major bytes. For a contiguous tensor
// (every safetensors tensor, and nearly every .bin one) they are a read-only view of the
// memory-mapped file; a non-contiguous .bin tensor is gathered once into memory owned by the
// Store. Either way the slice is valid until Close and must not be modified.
func (s *Store) Bytes(name string) ([]byte, Info, error) {
	r, ok := s.tensors[name]
	if !ok {
		return nil, Info{}, fmt.Errorf("weights: no tensor %q in %s", name, s.dir)
	}
	info, _ := s.Info(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, info, fmt.Errorf("weights: tensor %q: store is closed", name)
	}
	if r.strides == nil {
		return r.bytes(s.files[r.file].data), info, nil
	}
	if b, ok := s.copies[name]; ok {
		return b, info, nil
	}
	b := r.bytes(s.files[r.file].data)
	s.copies[name] = b
	return b, info, nil
}

// bytes slices (or, for a strided view, gathers) the record's bytes out of its file's data.
// The record's bounds were checked when it was built.
func (r *tensorRecord) bytes(data []byte) []byte {
	size := int64(r.info.DType.Size())
	if r.strides == nil {
		n := r.info.NumBytes()
		start := r.base + r.elemOffset*size
		return data[start : start+n : start+n]
	}
	return gather(data[r.base:r.base+r.storageLen], r.info.Shape, r.strides, r.elemOffset, size)
}

// gather copies a strided view (bounds checked when the index was built) into row-major order.
func gather(storage []byte, shape, strides []int64, offset, size int64) []byte {
	n, _ := numElements(shape)
	out := make([]byte, 0, n*size)
	if n == 0 {
		return out
	}
	idx := make([]int64, len(shape))
	for {
		e := offset
		for i, j := range idx {
			e += j * strides[i]
		}
		out = append(out, storage[e*size:(e+1)*size]...)
		i := len(idx) - 1
		for ; i >= 0; i-- {
			idx[i]++
			if idx[i] < shape[i] {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			return out
		}
	}
}

// Close unmaps the files. Slices returned by Bytes must not be used afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, f := range s.files {
		if err := f.unmap(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", f.path, err))
		}
	}
	s.copies = nil
	return errors.Join(errs...)
}

// IsAttentionBuffer reports whether name is one of the non-persistent attention buffers old
// GPT-J/GPT-2 checkpoints carry (….attn.bias, ….attn.masked_bias), which are not weights.
func IsAttentionBuffer(name string) bool {
	return strings.HasSuffix(name, ".attn.bias") || strings.HasSuffix(name, ".attn.masked_bias")
}
