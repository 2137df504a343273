package weights

import (
	"encoding/binary"
	"testing"
)

// The seed corpora in testdata/fuzz/<FuzzName>/ are made by `make_ckpt.py DIR seeds` (a tiny
// torch.save file and a tiny safetensors file, written as Go fuzz corpus entries); plain
// `go test` runs them. Fuzz with e.g. `go test -fuzz FuzzTorchZip -fuzztime 60s ./core/weights`.

// checkRecords reads every record parsed from data, as Store.Bytes would.
func checkRecords(t *testing.T, data []byte, recs []tensorRecord) {
	for i := range recs {
		r := &recs[i]
		if r.strides != nil && r.info.NumBytes() > 1<<22 {
			continue // legal but slow to gather on every fuzz input
		}
		if b := r.bytes(data); int64(len(b)) != r.info.NumBytes() {
			t.Fatalf("%s: %d bytes, want %d", r.info.Name, len(b), r.info.NumBytes())
		}
	}
}

func FuzzSafetensorsHeader(f *testing.F) {
	f.Add([]byte{})
	f.Add(binary.LittleEndian.AppendUint64(nil, 2))
	f.Add(append(binary.LittleEndian.AppendUint64(nil, 2), "{}"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := parseSafetensors(data)
		if err == nil {
			checkRecords(t, data, recs)
		}
	})
}

func FuzzTorchZip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("PK\x05\x06" + string(make([]byte, 18))))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := parseTorchZip(data)
		if err == nil {
			checkRecords(t, data, recs)
		}
	})
}

func FuzzUnpickle(f *testing.F) {
	f.Add([]byte("\x80\x02}q\x00."))
	f.Add([]byte("(((((t."))
	f.Fuzz(func(t *testing.T, data []byte) {
		storage := &torchStorage{dtype: F32, key: "0", numel: 16}
		persist := func(any) (any, error) { return storage, nil }
		v, err := unpickle(data, persist, torchReduce)
		if err != nil {
			return
		}
		if d, ok := v.(*pyDict); ok {
			for i, k := range d.keys {
				name, _ := k.(string)
				if tt, ok := d.vals[i].(*torchTensor); ok {
					if r, err := tt.record(name); err == nil {
						checkRecords(t, make([]byte, 64), []tensorRecord{r})
					}
				}
			}
		}
	})
}
