package weights

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
)

// maxSafetensorsHeader is the largest JSON header accepted (the safetensors library's limit).
const maxSafetensorsHeader = 100_000_000

// stEntry is one tensor of a safetensors header as written in the file.
type stEntry struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// parseSafetensors reads the header of a safetensors file held in data and returns its tensors,
// sorted by name, with offsets relative to the start of data. Errors do not name the file; the
// caller adds it.
func parseSafetensors(data []byte) ([]tensorRecord, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("truncated safetensors file: %d bytes, need at least 8 for the header size", len(data))
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > maxSafetensorsHeader {
		return nil, fmt.Errorf("corrupt safetensors header: size %d exceeds the limit %d", n, maxSafetensorsHeader)
	}
	if n > uint64(len(data)-8) {
		return nil, fmt.Errorf("truncated safetensors file: header of %d bytes but only %d bytes follow", n, len(data)-8)
	}
	start := int64(8 + n)
	bufLen := int64(len(data)) - start
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data[8:start]))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("corrupt safetensors header: %w", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("corrupt safetensors header: not a JSON object")
	}
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic errors
	recs := make([]tensorRecord, 0, len(raw))
	for _, name := range names {
		msg := raw[name]
		if name == "__metadata__" {
			var meta map[string]string
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, fmt.Errorf("corrupt safetensors header: __metadata__: %w", err)
			}
			continue
		}
		var e stEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("corrupt safetensors header: tensor %q: %w", name, err)
		}
		dt, err := ParseDType(e.DType)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if len(e.DataOffsets) != 2 {
			return nil, fmt.Errorf("corrupt safetensors header: tensor %q: data_offsets has %d values, want 2", name, len(e.DataOffsets))
		}
		b, end := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || end < b || end > bufLen {
			return nil, fmt.Errorf("corrupt safetensors header: tensor %q: data_offsets [%d, %d] outside the %d data bytes", name, b, end, bufLen)
		}
		numel, err := numElements(e.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if want := numel * int64(dt.Size()); end-b != want {
			return nil, fmt.Errorf("tensor %q: %d bytes stored but dtype %s × shape %v needs %d", name, end-b, dt, e.Shape, want)
		}
		shape := e.Shape
		if shape == nil {
			shape = []int64{}
		}
		recs = append(recs, tensorRecord{
			info:       Info{Name: name, DType: dt, Shape: shape},
			base:       start + b,
			storageLen: end - b,
		})
	}
	return recs, nil
}
