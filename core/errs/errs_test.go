package errs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
)

func TestInput(t *testing.T) {
	err := Input("layer %d out of range [0, %d)", 9, 4)
	if !errors.Is(err, ErrInput) || !IsInput(err) {
		t.Fatalf("Input(...) does not match ErrInput: %v", err)
	}
	if got, want := err.Error(), "layer 9 out of range [0, 4)"; got != want {
		t.Fatalf("message %q, want %q (the message is the caller's, nothing added)", got, want)
	}
	// wrapped further up, it is still an input error
	if w := fmt.Errorf("evaluate: %w", err); !IsInput(w) {
		t.Fatalf("a wrapped input error is no longer one: %v", w)
	}
	// %w inside Input keeps the chain
	if e := Input("open %s: %w", "x", os.ErrNotExist); !errors.Is(e, os.ErrNotExist) || !IsInput(e) {
		t.Fatalf("Input with %%w lost its chain: %v", e)
	}
}

func TestAsInput(t *testing.T) {
	if AsInput(nil) != nil {
		t.Fatal("AsInput(nil) != nil")
	}
	base := fmt.Errorf("model folder m: %w", os.ErrNotExist)
	err := AsInput(base)
	if !IsInput(err) || !errors.Is(err, os.ErrNotExist) || err.Error() != base.Error() {
		t.Fatalf("AsInput: %v (input %v, not-exist %v)", err, IsInput(err), errors.Is(err, os.ErrNotExist))
	}
	for _, e := range []error{errors.New("x"), context.Canceled, base} {
		if IsInput(e) {
			t.Fatalf("%v is an input error", e)
		}
	}
}
