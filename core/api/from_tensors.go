package api

import (
	"fmt"
	"github.com/simplescope/simplescope/core/errs"
	"sort"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/tokenizer"
	"github.com/simplescope/simplescope/core/torch"
)

// FromTensorsRequest builds a session from tensors instead of a checkpoint folder (ss.from_hf).
type FromTensorsRequest struct {
	Config    []byte               `msgpack:"config"`    // config.json's bytes
	Tensors   map[string]TensorArg `msgpack:"tensors"`   // checkpoint keys -> tensors (handles: no copy)
	DType     string               `msgpack:"dtype"`     // float32, float16 or bfloat16
	Device    string               `msgpack:"device"`    // cpu, cuda, cuda:N
	Tokenizer string               `msgpack:"tokenizer"` // a folder with tokenizer.json, or ""
	Name      string               `msgpack:"name"`      // what config reports as the model's path
}

// OpenTensors makes a session whose weights are the given tensors: a tensor handle that already
// has the dtype, the device and a contiguous layout becomes a weight without a copy (the model
// holds its own reference; the caller may release the handle at once), anything else is
// converted once. Request: FromTensorsRequest in msgpack.
func OpenTensors(req []byte) (*Session, error) {
	var r FromTensorsRequest
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	dev, err := torch.ParseDevice(r.Device)
	if err != nil {
		return nil, errs.AsInput(err)
	}
	if err := torch.CheckDevice(dev); err != nil {
		return nil, errs.AsInput(err)
	}
	dt, err := torch.ParseDType(r.DType)
	if err != nil {
		return nil, errs.AsInput(err)
	}
	if dt != torch.Float32 && dt != torch.Float16 && dt != torch.BFloat16 {
		return nil, errs.Input("dtype %s not supported (want float32, float16 or bfloat16)", dt)
	}
	cfg, err := gptj.ConfigFromJSON(r.Config)
	if err != nil {
		return nil, errs.AsInput(err)
	}
	names := make([]string, 0, len(r.Tensors))
	for k := range r.Tensors {
		names = append(names, k)
	}
	sort.Strings(names)
	ts := make(map[string]*torch.Tensor, len(names))
	defer func() {
		for _, t := range ts {
			t.Close()
		}
	}()
	for _, k := range names {
		a := r.Tensors[k]
		var t *torch.Tensor
		if a.Handle != 0 && a.bad == "" {
			t, err = borrowTensor(a.Handle) // FromTensors converts if needed
			if err != nil {
				err = errs.Input("tensor %s: %v", k, err)
			}
		} else {
			t, err = resolveTensor(a, "tensor "+k, dt, dev)
		}
		if err != nil {
			return nil, err
		}
		ts[k] = t
	}
	m, err := gptj.FromTensors(cfg, ts, dt, dev)
	if err != nil {
		if torch.IsOOM(err) {
			return nil, err
		}
		return nil, errs.AsInput(err)
	}
	m.Dir = r.Name
	s := &Session{Model: m}
	if r.Tokenizer != "" {
		s.Tok, s.TokErr = tokenizer.Load(r.Tokenizer)
		if s.TokErr != nil {
			m.Close()
			return nil, fmt.Errorf("tokenizer %s: %w", r.Tokenizer, s.TokErr)
		}
	} else {
		s.TokErr = fmt.Errorf("no tokenizer given")
	}
	return s, nil
}
