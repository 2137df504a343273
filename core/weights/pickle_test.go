package weights

import (
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
)

// TestOpcodeTableMatchesPickletools checks the dispatch table against CPython's opcode table:
// each opcode pickletools knows has a row under its code with its name, and no other row is
// filled.
func TestOpcodeTableMatchesPickletools(t *testing.T) {
	out, err := exec.Command(testutil.Python(t), "-c",
		"import json, pickletools; print(json.dumps({o.name: ord(o.code) for o in pickletools.opcodes}))").Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var want map[string]int
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	named := 0
	for code, o := range opcodes {
		if o.name == "" && o.load == nil {
			continue
		}
		named++
		if c, ok := want[o.name]; !ok || c != code {
			t.Errorf("row 0x%02x is named %q; pickletools has that name at 0x%02x (known: %v)", code, o.name, c, ok)
		}
	}
	if named != len(want) {
		t.Errorf("the table fills %d rows, pickletools knows %d opcodes", named, len(want))
	}
}

func TestUnsupportedOpcode(t *testing.T) {
	for _, tc := range []struct{ pickle, want string }{
		{"\x80\x02I1\n.", "unsupported pickle opcode 0x49 (INT) at offset 2"},
		{"\x80\x05(\x97.", "unsupported pickle opcode 0x97 (NEXT_BUFFER) at offset 3"},
		{"\x80\x02\x82\x01.", "unsupported pickle opcode 0x82 (EXT1) at offset 2"},
		{"\x80\x02\xff.", "unsupported pickle opcode 0xff at offset 2"},
		{"\x00", "unsupported pickle opcode 0x00 at offset 0"},
	} {
		_, err := unpickle([]byte(tc.pickle), nil, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: error %v, want %q", tc.pickle, err, tc.want)
		}
	}
}
