package main

import (
	"testing"

	"github.com/simplescope/simplescope/core/api"
)

// debug.panic is served only while SIMPLESCOPE_DEBUG_PANIC=1, read with C's getenv at each call,
// so that a variable set after the library loaded (as Python tests do) counts.
func TestDebugPanicEnvReadAtCallTime(t *testing.T) {
	t.Setenv(api.DebugPanicEnv, "") // os.Setenv also sets the C environment (cgo)
	if v := cGetenv(api.DebugPanicEnv); v != "" {
		t.Fatalf("cGetenv = %q after unsetting", v)
	}
	for _, m := range api.Methods() {
		if m == "debug.panic" {
			t.Fatal("debug.panic served without " + api.DebugPanicEnv)
		}
	}
	t.Setenv(api.DebugPanicEnv, "1")
	if v := cGetenv(api.DebugPanicEnv); v != "1" {
		t.Fatalf("cGetenv = %q, want 1", v)
	}
	found := false
	for _, m := range api.Methods() {
		found = found || m == "debug.panic"
	}
	if !found {
		t.Fatal("debug.panic not served with " + api.DebugPanicEnv + "=1")
	}
}
