package api

import (
	"encoding/binary"
	"fmt"
	"github.com/simplescope/simplescope/core/torch"
	"math"
)

// Array is a dense little-endian array: msgpack {"dtype", "shape", "data": bin}.
type Array struct {
	DType string  `msgpack:"dtype"`
	Shape []int64 `msgpack:"shape"`
	Data  []byte  `msgpack:"data"`
}

// F32Array packs float32 values.
func F32Array(v []float32, shape ...int64) Array {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Array{DType: "float32", Shape: shape, Data: b}
}

// I64Array packs int64 values.
func I64Array(v []int64, shape ...int64) Array {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return Array{DType: "int64", Shape: shape, Data: b}
}

// Ints decodes an integer array (int64 or int32) into []int.
func (a Array) Ints() ([]int, error) {
	n, err := torch.CheckedNumel(a.Shape, int64(len(a.Data)))
	if err != nil {
		return nil, err
	}
	switch a.DType {
	case "int64":
		if int64(len(a.Data)) != 8*n {
			return nil, fmt.Errorf("int64 array of shape %v has %d bytes", a.Shape, len(a.Data))
		}
		out := make([]int, n)
		for i := range out {
			out[i] = int(int64(binary.LittleEndian.Uint64(a.Data[8*i:])))
		}
		return out, nil
	case "int32":
		if int64(len(a.Data)) != 4*n {
			return nil, fmt.Errorf("int32 array of shape %v has %d bytes", a.Shape, len(a.Data))
		}
		out := make([]int, n)
		for i := range out {
			out[i] = int(int32(binary.LittleEndian.Uint32(a.Data[4*i:])))
		}
		return out, nil
	}
	return nil, fmt.Errorf("want an int64 or int32 array, got %s", a.DType)
}
