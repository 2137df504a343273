package weights

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
)

// maxGather bounds the copy made for a non-contiguous view larger than its storage.
const maxGather = 64 << 20

// torchStorage is one storage of a torch.save archive: the bytes of zip entry data/<key>.
type torchStorage struct {
	dtype DType
	key   string
	numel int64
	base  int64 // offset of the entry's bytes in the file
}

// torchTensor is what _rebuild_tensor_v2 returns: a strided view of a storage.
type torchTensor struct {
	storage *torchStorage
	offset  int64
	shape   []int64
	stride  []int64
}

// parseTorchZip reads a torch.save zip archive held in data and returns its tensors sorted by
// name. The storages are located, not read.
func parseTorchZip(data []byte) ([]tensorRecord, error) {
	if len(data) >= 2 && data[0] == 0x80 {
		return nil, fmt.Errorf("legacy (pre-1.6, non-zip) torch.save format is not supported: re-save it with a newer torch")
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("corrupt zip archive: %w", err)
	}
	entries := make(map[string]*zip.File, len(zr.File))
	prefix := ""
	for _, f := range zr.File {
		entries[f.Name] = f
		if strings.HasSuffix(f.Name, "/data.pkl") && strings.Count(f.Name, "/") == 1 {
			if prefix != "" {
				return nil, fmt.Errorf("zip archive holds two pickles (%sdata.pkl and %s)", prefix, f.Name)
			}
			prefix = strings.TrimSuffix(f.Name, "data.pkl")
		}
	}
	if prefix == "" {
		return nil, fmt.Errorf("zip archive has no <name>/data.pkl entry: not a torch.save file")
	}
	if f, ok := entries[prefix+"byteorder"]; ok {
		b, err := storedEntry(data, f)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(b)); s != "little" {
			return nil, fmt.Errorf("byte order %q is not supported (only little-endian)", s)
		}
	}
	pkl, err := storedEntry(data, entries[prefix+"data.pkl"])
	if err != nil {
		return nil, err
	}
	storages := map[string]*torchStorage{}
	persist := func(pid any) (any, error) {
		t, ok := pid.(pyTuple)
		if !ok || len(t) != 5 || t[0] != "storage" {
			return nil, fmt.Errorf("corrupt pickle: persistent id %v is not ('storage', type, key, location, numel)", pid)
		}
		g, ok1 := t[1].(pyGlobal)
		key, ok2 := t[2].(string)
		numel, ok3 := t[4].(int64)
		if !ok1 || !ok2 || !ok3 || numel < 0 {
			return nil, fmt.Errorf("corrupt pickle: persistent id %v is not ('storage', type, key, location, numel)", pid)
		}
		if s, ok := storages[key]; ok {
			return s, nil
		}
		dt, ok := torchStorageDTypes[g.name]
		if g.module != "torch" || !ok {
			return nil, fmt.Errorf("storage %s: unsupported storage type %s.%s", key, g.module, g.name)
		}
		f, ok := entries[prefix+"data/"+key]
		if !ok {
			return nil, fmt.Errorf("storage %s: zip entry %sdata/%s is missing", key, prefix, key)
		}
		off, err := entryOffset(data, f)
		if err != nil {
			return nil, err
		}
		if want := uint64(numel) * uint64(dt.Size()); numel > 1<<56 || f.UncompressedSize64 != want {
			return nil, fmt.Errorf("storage %s: zip entry holds %d bytes but %d × %s needs %d",
				key, f.UncompressedSize64, numel, dt, uint64(numel)*uint64(dt.Size()))
		}
		s := &torchStorage{dtype: dt, key: key, numel: numel, base: off}
		storages[key] = s
		return s, nil
	}
	root, err := unpickle(pkl, persist, torchReduce)
	if err != nil {
		return nil, fmt.Errorf("%sdata.pkl: %w", prefix, err)
	}
	dict, ok := root.(*pyDict)
	if !ok {
		return nil, fmt.Errorf("%sdata.pkl holds a %T, not a dict of tensors", prefix, root)
	}
	var recs []tensorRecord
	seen := map[string]bool{}
	for i, k := range dict.keys {
		name, ok := k.(string)
		t, isTensor := dict.vals[i].(*torchTensor)
		if !ok || !isTensor {
			continue // not a name → tensor entry (a nested checkpoint or extra state): skipped
		}
		if seen[name] {
			return nil, fmt.Errorf("tensor %q appears twice", name)
		}
		seen[name] = true
		rec, err := t.record(name)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	if len(recs) == 0 && len(dict.keys) > 0 {
		return nil, fmt.Errorf("%sdata.pkl: the top-level dict holds no tensors (a nested checkpoint?)", prefix)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].info.Name < recs[j].info.Name })
	return recs, nil
}

// torchReduce applies the few callables a state dict pickle uses; any other call becomes an
// opaque pyObject (an error only if it is later used as a tensor).
func torchReduce(callable any, args pyTuple) (any, error) {
	g, ok := callable.(pyGlobal)
	if !ok {
		return &pyObject{callable, args}, nil
	}
	switch g.module + "." + g.name {
	case "collections.OrderedDict", "builtins.dict", "__builtin__.dict":
		return &pyDict{}, nil
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
		return rebuildTensor(args)
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(args) < 1 {
			return nil, fmt.Errorf("corrupt pickle: %s without arguments", g.name)
		}
		return args[0], nil
	case "torch._tensor._rebuild_from_type_v2":
		if len(args) < 3 {
			return nil, fmt.Errorf("corrupt pickle: _rebuild_from_type_v2 with %d arguments", len(args))
		}
		inner, ok := args[2].(pyTuple)
		if !ok {
			return nil, fmt.Errorf("corrupt pickle: _rebuild_from_type_v2 arguments are %T", args[2])
		}
		return torchReduce(args[0], inner)
	}
	return &pyObject{callable, args}, nil
}

func intTuple(v any) ([]int64, bool) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, false
	}
	out := make([]int64, len(t))
	for i, x := range t {
		if out[i], ok = x.(int64); !ok {
			return nil, false
		}
	}
	return out, true
}

func rebuildTensor(args pyTuple) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("corrupt pickle: _rebuild_tensor with %d arguments, want at least 4", len(args))
	}
	s, ok := args[0].(*torchStorage)
	if !ok {
		return nil, fmt.Errorf("corrupt pickle: _rebuild_tensor on a %T, not a storage", args[0])
	}
	off, ok := args[1].(int64)
	shape, ok2 := intTuple(args[2])
	stride, ok3 := intTuple(args[3])
	if !ok || !ok2 || !ok3 {
		return nil, fmt.Errorf("corrupt pickle: storage %s: bad offset, size or stride", s.key)
	}
	return &torchTensor{storage: s, offset: off, shape: shape, stride: stride}, nil
}

// record checks that the view stays inside its storage and turns it into a tensorRecord.
func (t *torchTensor) record(name string) (tensorRecord, error) {
	s := t.storage
	bad := func(why string) (tensorRecord, error) {
		return tensorRecord{}, fmt.Errorf("tensor %q (storage %s, %d elements): %s", name, s.key, s.numel, why)
	}
	if len(t.shape) != len(t.stride) {
		return bad(fmt.Sprintf("shape %v and stride %v differ in rank", t.shape, t.stride))
	}
	numel, err := numElements(t.shape)
	if err != nil {
		return bad(err.Error())
	}
	if t.offset < 0 || t.offset > s.numel {
		return bad(fmt.Sprintf("storage offset %d out of range", t.offset))
	}
	contiguous := true
	if numel > 0 {
		last := t.offset // index of the last element the view reads
		want := int64(1)
		for i := len(t.shape) - 1; i >= 0; i-- {
			d, st := t.shape[i], t.stride[i]
			if st < 0 || st > s.numel {
				return bad(fmt.Sprintf("stride %v out of range", t.stride))
			}
			if st > 0 && d-1 > (s.numel-1-last)/st {
				return bad(fmt.Sprintf("view offset %d shape %v stride %v reads past the storage", t.offset, t.shape, t.stride))
			}
			last += (d - 1) * st
			if last >= s.numel {
				return bad(fmt.Sprintf("view offset %d shape %v stride %v reads past the storage", t.offset, t.shape, t.stride))
			}
			if d != 1 && st != want {
				contiguous = false
			}
			want *= d
		}
	}
	rec := tensorRecord{
		info:       Info{Name: name, DType: s.dtype, Shape: t.shape},
		base:       s.base,
		storageLen: s.numel * int64(s.dtype.Size()),
		elemOffset: t.offset,
	}
	if !contiguous {
		// A non-contiguous view is gathered into memory by Bytes. A view that reads elements
		// several times (expand) could ask for far more than the file holds: refuse that.
		if n := numel * int64(s.dtype.Size()); n > rec.storageLen && n > maxGather {
			return bad(fmt.Sprintf("non-contiguous view shape %v stride %v would need %d bytes gathered from a %d-byte storage", t.shape, t.stride, n, rec.storageLen))
		}
		rec.strides = t.stride
	}
	return rec, nil
}

// storedEntry returns the bytes of an uncompressed zip entry, sliced from data.
func storedEntry(data []byte, f *zip.File) ([]byte, error) {
	off, err := entryOffset(data, f)
	if err != nil {
		return nil, err
	}
	return data[off : off+int64(f.UncompressedSize64)], nil
}

// entryOffset finds where an entry's bytes start, checking that they are stored uncompressed
// and lie inside the file.
func entryOffset(data []byte, f *zip.File) (int64, error) {
	if f.Method != zip.Store || f.CompressedSize64 != f.UncompressedSize64 {
		return 0, fmt.Errorf("zip entry %s is compressed (method %d); torch.save stores entries uncompressed", f.Name, f.Method)
	}
	off, err := f.DataOffset()
	if err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, fmt.Errorf("truncated zip entry %s", f.Name)
		}
		return 0, fmt.Errorf("corrupt zip entry %s: %w", f.Name, err)
	}
	if off < 0 || f.UncompressedSize64 > uint64(len(data)) || uint64(off) > uint64(len(data))-f.UncompressedSize64 {
		return 0, fmt.Errorf("truncated zip entry %s: %d bytes at offset %d, file has %d", f.Name, f.UncompressedSize64, off, len(data))
	}
	return off, nil
}
