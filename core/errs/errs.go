// Package errs holds simplescope's one error kind that is the caller's fault: ErrInput. A
// package that refuses a request or an argument returns an error that matches ErrInput with
// errors.Is, made by Input (gptj's forward checks, patchscope's request checks, api's request
// decoding); api marks with AsInput, at its boundary, what it hands on as the caller's fault
// (a damaged model folder or corpus, a bad device or dtype, an undecodable token id). The C API
// maps ErrInput to SS_ERR_INPUT in one place (api.Status) and Python raises InputError (a
// ValueError). Any other error is a failure while running, unless it is out of memory
// (torch.ErrOOM), a missing file (os.ErrNotExist) or a cancellation (context.Canceled).
//
// The package imports only the standard library, so every package (tokenizer, weights and data
// included) may import it.
package errs

import (
	"errors"
	"fmt"
)

// ErrInput is what every input error matches with errors.Is. Its own text is never shown: an
// input error's message is the message it was made with.
var ErrInput = errors.New("input error")

// inputError keeps the message and the chain of the error it marks, and matches ErrInput.
type inputError struct{ err error }

func (e *inputError) Error() string        { return e.err.Error() }
func (e *inputError) Unwrap() error        { return e.err }
func (e *inputError) Is(target error) bool { return target == ErrInput }

// Input returns an input error with fmt.Errorf's message (%w wraps as usual).
func Input(format string, a ...any) error { return &inputError{fmt.Errorf(format, a...)} }

// AsInput marks err as an input error, keeping its message and what it wraps (so errors.Is
// still finds, e.g., os.ErrNotExist). nil stays nil.
func AsInput(err error) error {
	if err == nil {
		return nil
	}
	return &inputError{err}
}

// IsInput reports whether err is, or wraps, an input error.
func IsInput(err error) bool { return errors.Is(err, ErrInput) }
