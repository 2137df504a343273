package api

// TEMPORARY stand-in for the DLPack tensor convention (replaced when that lands): TensorArg
// decodes the Array form only, TensorOut packs float32 arrays.

import (
	"fmt"

	"github.com/simplescope/simplescope/core/errs"
	"github.com/simplescope/simplescope/core/torch"
)

type TensorArg struct {
	Array
	Tensor uint64 `msgpack:"tensor"`
}

func (s *Session) tensorArg(a TensorArg, name string, dtype torch.DType) (*torch.Tensor, error) {
	src, err := torch.ParseDType(a.DType)
	if err != nil {
		return nil, errs.Input("%s: %v", name, err)
	}
	t, err := torch.FromBytes(a.Data, src, a.Shape, dtype, s.Model.Device)
	if err != nil {
		return nil, errs.Input("%s: %v", name, err)
	}
	return t, nil
}

func TensorOut(t *torch.Tensor) any {
	defer t.Close()
	v, err := t.Float32s()
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return F32Array(v, t.Shape()...)
}
