package api

import (
	"context"
	"errors"
	"os"

	"github.com/simplescope/simplescope/core/errs"
	"github.com/simplescope/simplescope/core/torch"
)

// Status codes: enum ss_status in capi/simplescope.h (TestHeaderStatuses in capi checks that the
// two agree) and the Python binding.
const (
	StatusOK        = 0
	StatusInput     = 1 // bad input: the caller's mistake, errs.ErrInput (ValueError)
	StatusRuntime   = 2 // a failure while running (RuntimeError)
	StatusOOM       = 3 // out of memory (MemoryError)
	StatusCancelled = 4 // cancelled by the caller
	StatusPanic     = 5 // an internal error (a recovered Go panic)
	StatusNotFound  = 6 // a missing file or folder (FileNotFoundError)
)

// Status maps an error to a status code. This is the one place where errors become statuses:
// any error that matches errs.ErrInput, from whichever package, is StatusInput (unless it is
// also a cancellation, out of memory or a missing file, which take precedence).
func Status(err error) int {
	switch {
	case err == nil:
		return StatusOK
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return StatusCancelled
	case torch.IsOOM(err):
		return StatusOOM
	case errors.Is(err, os.ErrNotExist):
		return StatusNotFound
	case errors.Is(err, errs.ErrInput):
		return StatusInput
	}
	return StatusRuntime
}
