package torch

import (
	"testing"
)

// A tensor exported as DLPack and imported back is the same memory: no copy either way, the
// export keeps the storage alive after the original handle is closed, and the live count returns
// to its baseline once the import (which owns the export) is closed.
func TestDLPackRoundTripSharesStorage(t *testing.T) {
	base := LiveTensors()
	x, err := FromSlice([]float32{1, 2, 3, 4, 5, 6}, []int64{2, 3}, Float32, CPU)
	if err != nil {
		t.Fatal(err)
	}
	ptr, contig, err := x.DataPtr()
	if err != nil || !contig || ptr == 0 {
		t.Fatalf("DataPtr = %#x, %v, %v", ptr, contig, err)
	}
	p, err := ExportDLPack(x)
	if err != nil {
		t.Fatal(err)
	}
	if got := LiveTensors() - base; got != 2 {
		t.Fatalf("handle + export: live +%d, want +2", got)
	}
	x.Close() // the export holds its own reference
	y, err := ImportDLPack(p)
	if err != nil {
		t.Fatal(err)
	}
	yp, _, err := y.DataPtr()
	if err != nil || yp != ptr {
		t.Fatalf("imported data at %#x, exported from %#x (%v): a copy was made", yp, ptr, err)
	}
	if s := y.Shape(); len(s) != 2 || s[0] != 2 || s[1] != 3 || y.DType() != Float32 || y.Device() != CPU {
		t.Fatalf("imported %v %v on %v", s, y.DType(), y.Device())
	}
	v, err := y.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	checkClose(t, "round trip", v, []float32{1, 2, 3, 4, 5, 6}, 0)
	y.Close() // calls the export's deleter
	if got := LiveTensors() - base; got != 0 {
		t.Fatalf("after closing the import: live +%d, want 0", got)
	}
}

// Alias and ToContiguous share storage when nothing needs to change and copy exactly when the
// dtype or the layout differs.
func TestAliasAndToContiguous(t *testing.T) {
	base := LiveTensors()
	s := NewScope()
	defer func() {
		s.Close()
		if got := LiveTensors() - base; got != 0 {
			t.Errorf("live +%d after closing everything", got)
		}
	}()
	x := s.Own(FromSlice([]float32{1, 2, 3, 4, 5, 6}, []int64{2, 3}, Float32, CPU))
	xt := s.Transpose(x, 0, 1) // (3, 2), not contiguous
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	ptr, _, _ := x.DataPtr()
	cases := []struct {
		name     string
		in       *Tensor
		dt       DType
		same     bool
		want     []float32
		contigIn bool
	}{
		{"same dtype, contiguous", x, Float32, true, []float32{1, 2, 3, 4, 5, 6}, true},
		{"other dtype", x, BFloat16, false, []float32{1, 2, 3, 4, 5, 6}, true},
		{"transposed", xt, Float32, false, []float32{1, 4, 2, 5, 3, 6}, false},
		{"transposed, other dtype", xt, BFloat16, false, []float32{1, 4, 2, 5, 3, 6}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, contig, _ := c.in.DataPtr(); contig != c.contigIn {
				t.Fatalf("input contiguous = %v, want %v", contig, c.contigIn)
			}
			y := s.Own(c.in.ToContiguous(c.dt, CPU))
			if s.Err() != nil {
				t.Fatal(s.Err())
			}
			yp, contig, _ := y.DataPtr()
			if !contig || y.DType() != c.dt {
				t.Fatalf("result contiguous=%v dtype=%v", contig, y.DType())
			}
			if (yp == ptr) != c.same {
				t.Fatalf("result shares the input's memory: %v, want %v", yp == ptr, c.same)
			}
			v, err := y.Float32s()
			if err != nil {
				t.Fatal(err)
			}
			checkClose(t, c.name, v, c.want, 0)
		})
	}
	a := s.Own(x.Alias())
	if ap, _, _ := a.DataPtr(); ap != ptr {
		t.Fatalf("alias at %#x, tensor at %#x", ap, ptr)
	}
}
