package weights

import "fmt"

// DType is the element type of a stored tensor.
type DType int

// Element types found in safetensors and PyTorch checkpoints.
const (
	Invalid DType = iota
	F32
	F16
	BF16
	F64
	I64
	I32
	I16
	I8
	U8
	Bool
	U16
	U32
	U64
	F8E4M3
	F8E5M2
)

var dtypeNames = [...]string{
	Invalid: "invalid", F32: "F32", F16: "F16", BF16: "BF16", F64: "F64", I64: "I64", I32: "I32",
	I16: "I16", I8: "I8", U8: "U8", Bool: "BOOL", U16: "U16", U32: "U32", U64: "U64",
	F8E4M3: "F8_E4M3", F8E5M2: "F8_E5M2",
}

var dtypeSizes = [...]int{
	Invalid: 0, F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, Bool: 1,
	U16: 2, U32: 4, U64: 8, F8E4M3: 1, F8E5M2: 1,
}

// String returns the safetensors spelling of the type ("F32", "BF16", "BOOL", ...).
func (d DType) String() string {
	if d < 0 || int(d) >= len(dtypeNames) {
		return fmt.Sprintf("DType(%d)", int(d))
	}
	return dtypeNames[d]
}

// Size returns the size of one element in bytes (0 for an invalid type).
func (d DType) Size() int {
	if d < 0 || int(d) >= len(dtypeSizes) {
		return 0
	}
	return dtypeSizes[d]
}

// ParseDType reads a safetensors dtype name ("F32", "BF16", "BOOL", ...).
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if i != int(Invalid) && n == s {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q", s)
}

// torchStorageDTypes maps the storage classes torch.save names (torch.FloatStorage, ...) to
// element types.
var torchStorageDTypes = map[string]DType{
	"FloatStorage": F32, "HalfStorage": F16, "BFloat16Storage": BF16, "DoubleStorage": F64,
	"LongStorage": I64, "IntStorage": I32, "ShortStorage": I16, "CharStorage": I8,
	"ByteStorage": U8, "BoolStorage": Bool,
	"UInt16Storage": U16, "UInt32Storage": U32, "UInt64Storage": U64,
	"Float8_e4m3fnStorage": F8E4M3, "Float8_e5m2Storage": F8E5M2,
}

// numElements multiplies a shape out, failing on negative dimensions and on overflow.
func numElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d != 0 && n > (1<<62)/d {
			return 0, fmt.Errorf("shape %v is too large", shape)
		}
		n *= d
	}
	return n, nil
}
