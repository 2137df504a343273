package api

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/simplescope/simplescope/core/torch"
)

// Status codes (mirrored in capi/simplescope.h and the Python binding).
const (
	StatusOK        = 0
	StatusInput     = 1 // bad input: the caller's mistake (ValueError)
	StatusRuntime   = 2 // a failure while running (RuntimeError)
	StatusOOM       = 3 // out of memory (MemoryError)
	StatusCancelled = 4 // cancelled by the caller
	StatusPanic     = 5 // an internal error (a recovered Go panic)
	StatusNotFound  = 6 // a missing file or folder (FileNotFoundError)
)

// InputError marks an error caused by the request.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputf(format string, a ...any) error { return &InputError{fmt.Errorf(format, a...)} }

// Status maps an error to a status code.
func Status(err error) int {
	var ie *InputError
	switch {
	case err == nil:
		return StatusOK
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return StatusCancelled
	case torch.IsOOM(err):
		return StatusOOM
	case errors.Is(err, os.ErrNotExist):
		return StatusNotFound
	case errors.As(err, &ie):
		return StatusInput
	}
	return StatusRuntime
}
