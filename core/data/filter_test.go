package data

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
)

// filterInputs are texts chosen for the edges of Python's len and split(" ").
var filterInputs = []struct{ name, text string }{
	{"empty", ""},
	{"one space", " "},
	{"two spaces", "  "},
	{"leading and trailing", " a b "},
	{"double space", "a  b"},
	{"tabs and newlines are not separators", "a\tb\nc\r\nd"},
	{"nbsp is not a separator", "a\u00a0b"},
	{"ideographic space is not a separator", "天\u3000地"},
	{"accents", "café naïve résumé"},
	{"combining mark", "e\u0301 e\u0301"},
	{"cyrillic", "Привет, как дела?"},
	{"chinese", "我们今天去公园 散步"},
	{"emoji outside BMP", "🙂 🙃 👍🏽"},
	{"zwj sequence", "👩‍👩‍👧"},
	{"ascii sentence", "The quick brown fox jumps over the lazy dog."},
}

type pyLen struct{ chars, words int }

func pythonLens(t *testing.T, texts []string) []pyLen {
	t.Helper()
	path := filepath.Join(t.TempDir(), "texts.json")
	b, err := json.Marshal(texts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var raw [][2]int
	if err := json.Unmarshal(testutil.RunPython(t, filepath.Join("testdata", "pylen.py"), path), &raw); err != nil {
		t.Fatalf("decode pylen.py output: %v", err)
	}
	if len(raw) != len(texts) {
		t.Fatalf("pylen.py returned %d results for %d texts", len(raw), len(texts))
	}
	out := make([]pyLen, len(raw))
	for i, r := range raw {
		out[i] = pyLen{r[0], r[1]}
	}
	return out
}

func TestCodePointsAndWordsMatchPython(t *testing.T) {
	texts := make([]string, len(filterInputs))
	for i, c := range filterInputs {
		texts[i] = c.text
	}
	want := pythonLens(t, texts)
	for i, c := range filterInputs {
		t.Run(c.name, func(t *testing.T) {
			if got := CodePoints(c.text); got != want[i].chars {
				t.Errorf("CodePoints(%q) = %d, Python len = %d", c.text, got, want[i].chars)
			}
			if got := Words(c.text); got != want[i].words {
				t.Errorf("Words(%q) = %d, Python len(split(' ')) = %d", c.text, got, want[i].words)
			}
		})
	}
}

// TestFilterBoundaries builds texts right at and around the bounds of both presets and checks
// Keep against Python's len and split computed on the same texts.
func TestFilterBoundaries(t *testing.T) {
	type tc struct {
		name   string
		text   string
		filter Filter
	}
	var cases []tc
	seed, _ := PresetByName("seed")
	paper, _ := PresetByName("paper")
	for _, p := range []Preset{seed, paper} {
		for _, d := range []int{-1, 0, 1} {
			// Word bound: n pieces of "a" (short in characters).
			n := p.MaxWords + d
			words := repeatJoin("a", " ", n)
			cases = append(cases, tc{p.Name + "/words" + itoa(n), words, p.Filter})
			// Word bound reached with empty pieces (consecutive spaces).
			cases = append(cases, tc{p.Name + "/spaces" + itoa(n), repeatJoin("", " ", n), p.Filter})
			// Character bound with multi-byte code points and no spaces.
			m := p.MaxChars + d
			cases = append(cases, tc{p.Name + "/chars" + itoa(m), repeatJoin("я", "", m), p.Filter})
			cases = append(cases, tc{p.Name + "/emoji" + itoa(m), repeatJoin("🙂", "", m), p.Filter})
		}
	}
	texts := make([]string, len(cases))
	for i, c := range cases {
		texts[i] = c.text
	}
	ref := pythonLens(t, texts)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := ref[i].words < c.filter.MaxWords && ref[i].chars < c.filter.MaxChars
			if got := c.filter.Keep(c.text); got != want {
				t.Errorf("Keep = %v, Python says %v (len %d, words %d, bounds %+v)", got, want, ref[i].chars, ref[i].words, c.filter)
			}
		})
	}
}

func repeatJoin(s, sep string, n int) string {
	if n <= 0 {
		return ""
	}
	b := make([]byte, 0, n*(len(s)+len(sep)))
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, sep...)
		}
		b = append(b, s...)
	}
	return string(b)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
