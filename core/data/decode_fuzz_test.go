package data

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeJSONLine checks DecodeJSONLine against a plain generic decode: it must succeed
// exactly when the line is valid UTF-8 holding one JSON object whose "text" is a string, and
// then return that string. The seeds run in every `go test`; `go test -fuzz=FuzzDecodeJSONLine
// ./core/data` explores further.
func FuzzDecodeJSONLine(f *testing.F) {
	for _, s := range []string{
		`{"text": "hello", "meta": {"pile_set_name": "Github"}}`,
		`{"meta": {"a": [1, 2.5e3, null, true]}, "text": "x\ny\u00e9\ud83d\ude42"}`,
		`{"text": ""}`,
		`{"text": 1}`,
		`{"text": null}`,
		`{"Text": "case"}`,
		`{"text": "a", "text": "b"}`,
		`{"text": "a"} {}`,
		`[{"text": "a"}]`,
		`"text"`,
		`null`,
		`{"text": "\ud800 lone surrogate"}`,
		"{\"text\": \"bad \xff byte\"}",
		`{"text": "unterminated`,
		` 	{"text" : "spaces"} `,
		``,
		`{"text": "esc \/ \b \f \r \t \" \\ \u00E9\u00e9 \uD83D\uDE42"}`,
		`{"text": "pair broken \ud83d\u0041 \ud83d\n \udc00\ud800 end \ud800"}`,
		`{"te\u0078t": "escaped key", "meta": {"text": 1}}`,
		`{"text": "a", "meta": [{"text": "nested"}], "n": -1.5e-3, "b": false}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, err := DecodeJSONLine(line)

		wantOK := false
		var want string
		if utf8.Valid(line) {
			var v any
			if json.Unmarshal(line, &v) == nil {
				if m, ok := v.(map[string]any); ok {
					want, wantOK = m["text"].(string)
				}
			}
		}
		if wantOK != (err == nil) {
			t.Fatalf("line %q: DecodeJSONLine error %v, generic decode ok=%v", line, err, wantOK)
		}
		if wantOK && got != want {
			t.Fatalf("line %q: got %q, generic decode %q", line, got, want)
		}
		if err == nil && !utf8.ValidString(got) {
			t.Fatalf("line %q: result %q is not valid UTF-8", line, got)
		}
	})
}
