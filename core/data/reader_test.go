package data

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReaderMatchesPython(t *testing.T) {
	jsonl := `{"text": "first doc", "meta": {"pile_set_name": "Github", "n": [1, 2, {"x": null}]}}
{"meta": {}, "text": "second\nwith newline and \"quotes\" and \\ backslash"}

{"text": "caf\u00e9 \ud83d\ude42 Привет 我们"}
   ` + "\t" + `
{"text": ""}
{"text": "   leading spaces kept  "}` + "\r\n" + `{"text": "a", "text": "duplicate key: last wins"}
{"text":"no trailing newline"}`
	txt := "plain line one\n\n  indented  line  \r\nПривет мир 🙂\n\t\nlast line without newline"
	cases := []struct {
		name    string
		content string
	}{
		{"mixed.jsonl", jsonl},
		{"mixed.jsonl.zst", jsonl},
		{"UPPER.JSONL", jsonl},
		{"plain.txt", txt},
		{"plain.txt.zst", txt},
		{"one.jsonl", `{"text": "x"}` + "\n"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, c.name, []byte(c.content))
			got, err := ReadFile(path, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := pythonPreset(t, path, Preset{})
			compareDocs(t, got, want.Docs)
		})
	}
}

func TestReaderErrors(t *testing.T) {
	good := `{"text": "ok"}` + "\n"
	compressed := zstdCompress(t, []byte(strings.Repeat(good, 40000)+"{\"text\": \"tail\"}\n"))
	cases := []struct {
		name    string
		file    string
		raw     []byte // written as is (no compression)
		missing bool
		want    []string // substrings of the error
	}{
		{name: "not json", file: "a.jsonl", raw: []byte(good + good + "{text: bad}\n"), want: []string{"line 3", "not valid JSON"}},
		{name: "truncated json line", file: "a.jsonl", raw: []byte(good + `{"text": "cut`), want: []string{"line 2", "not valid JSON"}},
		{name: "two values on a line", file: "a.jsonl", raw: []byte(`{"text": "a"} {"text": "b"}`), want: []string{"line 1", "not valid JSON"}},
		{name: "no text field", file: "a.jsonl", raw: []byte(good + `{"meta": {}}` + "\n"), want: []string{"line 2", `no "text" field`}},
		{name: "text spelled differently", file: "a.jsonl", raw: []byte(`{"Text": "a"}`), want: []string{"line 1", `no "text" field`}},
		{name: "text is a number", file: "a.jsonl", raw: []byte(`{"text": 17}`), want: []string{"line 1", "not a string", "17"}},
		{name: "text is null", file: "a.jsonl", raw: []byte(good + "\n" + `{"text": null}`), want: []string{"line 3", "not a string", "null"}},
		{name: "text is an object", file: "a.jsonl", raw: []byte(`{"text": {"a": 1}}`), want: []string{"line 1", "not a string"}},
		{name: "array line", file: "a.jsonl", raw: []byte(`["text"]`), want: []string{"line 1", "not a JSON object"}},
		{name: "string line", file: "a.jsonl", raw: []byte(`"text"`), want: []string{"line 1", "not a JSON object"}},
		{name: "null line", file: "a.jsonl", raw: []byte("null\n"), want: []string{"line 1", "not a JSON object"}},
		{name: "invalid utf8 in jsonl", file: "a.jsonl", raw: []byte("{\"text\": \"a\xffb\"}"), want: []string{"line 1", "invalid UTF-8"}},
		{name: "invalid utf8 in txt", file: "a.txt", raw: []byte("fine\nbad \xc3\x28 byte\n"), want: []string{"line 2", "invalid UTF-8"}},
		{name: "empty jsonl", file: "a.jsonl", raw: []byte{}, want: []string{"no documents", "empty file"}},
		{name: "blank-only txt", file: "a.txt", raw: []byte("\n  \n\t\r\n"), want: []string{"no documents"}},
		{name: "empty zst stream", file: "a.jsonl.zst", raw: zstdCompress(t, nil), want: []string{"no documents"}},
		{name: "zero-byte zst file", file: "a.jsonl.zst", raw: []byte{}, want: []string{"no documents"}},
		{name: "missing file", file: "nope.jsonl", missing: true, want: []string{"no such file"}},
		{name: "unknown extension", file: "a.csv", raw: []byte(good), want: []string{"unknown corpus format", ".jsonl.zst"}},
		{name: "truncated zst", file: "a.jsonl.zst", raw: compressed[:len(compressed)/2], want: []string{"line ", "decompress"}},
		{name: "zst missing last byte", file: "a.jsonl.zst", raw: compressed[:len(compressed)-1], want: []string{"line ", "decompress"}},
		{name: "not zstd at all", file: "a.jsonl.zst", raw: []byte(good), want: []string{"line 1", "decompress"}},
		{name: "corrupt zst", file: "a.jsonl.zst", raw: corrupt(compressed), want: []string{"line ", "decompress"}},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, itoa(i)+"_"+c.file)
			if !c.missing {
				if err := os.WriteFile(path, c.raw, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			docs, err := ReadFile(path, 0)
			if err == nil {
				t.Fatalf("no error; read %d documents", len(docs))
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range append([]string{path}, c.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// corrupt flips bytes in the middle of a compressed stream.
func corrupt(b []byte) []byte {
	c := append([]byte(nil), b...)
	for i := len(c) / 3; i < len(c)/3+16 && i < len(c); i++ {
		c[i] ^= 0x5a
	}
	return c
}

// TestReadFileStopsAtMax shows the reader streams: a bad line after the first max documents is
// never read.
func TestReadFileStopsAtMax(t *testing.T) {
	path := writeFile(t, t.TempDir(), "a.jsonl", []byte(`{"text": "a"}`+"\n"+`{"text": "b"}`+"\nnot json\n"))
	docs, err := ReadFile(path, 2)
	if err != nil {
		t.Fatalf("ReadFile(max 2): %v", err)
	}
	if len(docs) != 2 || docs[1].Text != "b" {
		t.Fatalf("got %+v", docs)
	}
	if _, err := ReadFile(path, 3); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("ReadFile(max 3) error = %v, want one naming line 3", err)
	}
}

func TestReaderEOFAndStickyError(t *testing.T) {
	path := writeFile(t, t.TempDir(), "a.jsonl", []byte(`{"text": "a"}`+"\n"))
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if d, err := r.Next(); err != nil || d.Text != "a" {
		t.Fatalf("first Next = %+v, %v", d, err)
	}
	for i := 0; i < 2; i++ {
		if _, err := r.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("Next after the last document = %v, want io.EOF", err)
		}
	}
}
