package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/simplescope/simplescope/core/api"
)

// The status codes are defined once for C, as enum ss_status in simplescope.h; the Go side
// (api.Status*) must give the same names the same values.
func TestHeaderStatuses(t *testing.T) {
	b, err := os.ReadFile("simplescope.h")
	if err != nil {
		t.Fatal(err)
	}
	h := string(b)
	if strings.Contains(h, "#define SS_") {
		t.Fatal("simplescope.h #defines an SS_ constant: statuses belong in enum ss_status")
	}
	m := regexp.MustCompile(`(?s)typedef enum ss_status \{(.*?)\} ss_status;`).FindStringSubmatch(h)
	if m == nil {
		t.Fatal("simplescope.h has no `typedef enum ss_status {...} ss_status;`")
	}
	got := map[string]int{}
	for _, e := range regexp.MustCompile(`(SS_\w+)\s*=\s*(\d+)`).FindAllStringSubmatch(m[1], -1) {
		v, _ := strconv.Atoi(e[2])
		got[e[1]] = v
	}
	want := map[string]int{
		"SS_OK": api.StatusOK, "SS_ERR_INPUT": api.StatusInput, "SS_ERR_RUNTIME": api.StatusRuntime,
		"SS_ERR_OOM": api.StatusOOM, "SS_ERR_CANCELLED": api.StatusCancelled,
		"SS_ERR_PANIC": api.StatusPanic, "SS_ERR_NOT_FOUND": api.StatusNotFound,
	}
	if len(got) != len(want) {
		t.Errorf("enum ss_status has %d values %v, want %d %v", len(got), got, len(want), want)
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("enum ss_status: %s = %d (present %v), want %d", name, g, ok, v)
		}
	}
}
