package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
)

// splitPatterns exercise every construct the matcher implements (and the families' patterns).
var splitPatterns = []string{
	gpt2Pattern, llama3Pattern, qwen2Pattern,
	`\s+`, `\S+`, `\d+`, `\D+`, `[\d]+`, `\p{Nd}+`, `\p{Greek}+`, `\p{l}+`, `\P{L}+`, `\p{^L}+`, `\p{Lu}\p{Ll}*`,
	`\p{Han}+|\p{Hiragana}+|\p{Katakana}+`, `[\p{L}\p{M}]+`, `[^\s\p{L}\p{N}]+`, ` ?\p{L}+| ?\p{N}+`,
	`.`, `.+`, `a{,2}`, `[]a]`, `(a)|b`, `\x41`, `\u0041`, `[\x41-\x43]+`, `x{`, `\x{1F600}+`, `[\x{1F300}-\x{1FAFF}]+`,
	`(?i:k)`, `(?i:'s|'t|'re)`, `(?i:[0-9])+`, `(?-i:a)|(?i:b)`, `(?i:x)y`,
	`\s+(?!\S)`, `\s+(?=\S)`, `(?=a)`, `(?!a)`, `a*`, `x??`, `a+?b`, `a*?`, `b?`, `^a|b$`, `^`, `$`, `\A\s+|\s+\z`, `^\s*$`,
	`(?:ab)+`, `(ab|a)(bc|c)?`, `\p{N}{1,3}`, `\p{N}{2}`, `\p{L}{2,}`, `\p{L}{2,4}?`, `[a-c-e]+`, `[-a]+`, `[a-]+`, `[\-\]\\]+`,
	`\.\*\+\?\(\)\[\]\{\}\|\^\$`, `[^a-z\s]+`, `\t|\n|\r|\f|\v|\a|\e`, `[\s\d]+`, `[^\S\n]+`, `\s*[\r\n]+`,
	`(?:\p{L}|\p{N})+(?:'\p{L}+)?`, `(a|ab)(c|bcd)(d*)`, `(?:a|b)*c`, `\p{Cyrillic}+|\p{Latin}+`,
}

// splitTexts are the texts the pattern tests split: adversarial strings and some of the corpus.
func splitTexts(t testing.TB) []string {
	texts := append([]string(nil), adversarial...)
	texts = append(texts, "baaxa bß Straße\nab", "aaaaa", "a]b", "cab", "xABCDx", "ax{b", "aKxk", "AB", "ab c d abcd bd",
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "xxxxxxxxxxxxxxxxxxxxxxxxxxy", "abcd abc ab a", ".*+?()[]{}|^$ \\-]")
	return append(texts, corpus(t)[:150]...)
}

type splitSpec struct {
	pattern  string
	behavior string // HF's Python name
	invert   bool
}

var behaviorNames = map[string]string{"isolated": "Isolated", "removed": "Removed", "merged_with_previous": "MergedWithPrevious",
	"merged_with_next": "MergedWithNext", "contiguous": "Contiguous"}

// hfSplit runs hf_ref.py split: per text, per spec, HF's pieces (nil where HF refuses the pattern).
func hfSplit(t *testing.T, specs []splitSpec, texts []string) [][][]string {
	t.Helper()
	var list [][]any
	for _, s := range specs {
		list = append(list, []any{s.pattern, s.behavior, s.invert})
	}
	raw, _ := json.Marshal(list)
	pf := filepath.Join(t.TempDir(), "patterns.json")
	if err := os.WriteFile(pf, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	out := testutil.RunPython(t, filepath.Join("testdata", "hf_ref.py"), "split", pf, writeTexts(t, texts))
	var res [][][]string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<28)
	for sc.Scan() {
		var row []json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		var pieces [][]string
		for _, r := range row {
			var p []string
			if json.Unmarshal(r, &p) != nil {
				p = nil // {"error": …}
			} else if p == nil {
				p = []string{}
			}
			pieces = append(pieces, p)
		}
		res = append(res, pieces)
	}
	if len(res) != len(texts) {
		t.Fatalf("hf_ref.py split: %d rows for %d texts", len(res), len(texts))
	}
	return res
}

// goSplit runs one Split step the way a tokenizer.json would configure it.
func goSplit(t *testing.T, s splitSpec, engine bool) (preStep, error) {
	t.Helper()
	inv := "false"
	if s.invert {
		inv = "true"
	}
	pat, _ := json.Marshal(s.pattern)
	raw := fmt.Sprintf(`{"type": "Split", "pattern": {"Regex": %s}, "behavior": %q, "invert": %s}`, pat, behaviorNames[s.behavior], inv)
	p := &parser{path: "test"}
	steps, err := p.preTokenizer(json.RawMessage(raw), nil)
	if err != nil {
		return nil, err
	}
	if engine { // the generic matcher even for the patterns that have a scanner
		re, err := compileRegex(s.pattern)
		if err != nil {
			return nil, err
		}
		steps[0].(*splitStep).find = re.findAll
	}
	return steps[0], nil
}

func pieces(st preStep, s string) []string {
	out := []string{}
	st.apply(s, true, func(p string, _ bool) { out = append(out, p) })
	return out
}

// TestSplitMatchesHF splits texts with each pattern of splitPatterns (Isolated) and with the
// families' patterns under every behavior and inverted, through HF's Split pre-tokenizer and
// through this package (the scanners where a pattern has one, and the generic matcher), and
// requires the same pieces.
func TestSplitMatchesHF(t *testing.T) {
	var specs []splitSpec
	for _, p := range splitPatterns {
		specs = append(specs, splitSpec{p, "isolated", false})
	}
	for _, p := range []string{llama3Pattern, `\s+(?!\S)`, `(?=a)`, `a*`, `\p{N}`, ` `} {
		for _, b := range []string{"removed", "merged_with_previous", "merged_with_next", "contiguous"} {
			specs = append(specs, splitSpec{p, b, false}, splitSpec{p, b, true})
		}
		specs = append(specs, splitSpec{p, "isolated", true})
	}
	texts := splitTexts(t)
	want := hfSplit(t, specs, texts)
	for k, s := range specs {
		for _, engine := range []bool{false, true} {
			if engine && scannerFor(s.pattern) == nil {
				continue
			}
			st, err := goSplit(t, s, engine)
			if err != nil {
				t.Errorf("pattern %q: %v", s.pattern, err)
				continue
			}
			if want[0][k] == nil {
				t.Errorf("pattern %q: HF refuses it, this package compiles it", s.pattern)
				continue
			}
			bad := 0
			for i, text := range texts {
				got := pieces(st, text)
				if strings.Join(got, "\x00") != strings.Join(want[i][k], "\x00") || len(got) != len(want[i][k]) {
					if bad < 3 {
						t.Errorf("pattern %q %s invert=%v engine=%v, text %.50q:\n got %q\n  HF %q", s.pattern, s.behavior, s.invert, engine, text,
							got[:min(len(got), 12)], want[i][k][:min(len(want[i][k]), 12)])
					}
					bad++
				}
			}
		}
	}
}

// TestScannersMatchHFCorpus splits every corpus document with the GPT-2, Llama 3 and Qwen2
// patterns, through the hand-written scanners and the generic matcher, and compares the piece
// lengths with HF's Split pre-tokenizer.
func TestScannersMatchHFCorpus(t *testing.T) {
	docs := corpus(t)
	in := writeTexts(t, docs)
	for _, pat := range []string{gpt2Pattern, llama3Pattern, qwen2Pattern} {
		out := testutil.RunPython(t, filepath.Join("testdata", "hf_ref.py"), "splitlen", pat, in)
		var want [][]int
		dec := json.NewDecoder(bytes.NewReader(out))
		for dec.More() {
			var l []int
			if err := dec.Decode(&l); err != nil {
				t.Fatal(err)
			}
			want = append(want, l)
		}
		if len(want) != len(docs) {
			t.Fatalf("splitlen: %d rows for %d docs", len(want), len(docs))
		}
		re, err := compileRegex(pat)
		if err != nil {
			t.Fatal(err)
		}
		for name, find := range map[string]func(string, func(int, int)){"scanner": scannerFor(pat), "engine": re.findAll} {
			bad, n := 0, 0
			for i, d := range docs {
				var got []int
				find(d, func(s, e int) { got = append(got, e-s) })
				n += len(got)
				if j := firstDiff(got, want[i]); j >= 0 {
					if bad < 3 {
						t.Errorf("%s %.30q doc %d: piece %d: lengths %v, HF %v", name, pat, i, j, window(got, j), window(want[i], j))
					}
					bad++
				}
			}
			t.Logf("%s %.30q: %d pieces, %d documents differ", name, pat, n, bad)
		}
	}
}

// FuzzScannersMatchEngine checks that the hand-written scanners of the GPT-2, Llama 3 and Qwen2
// patterns give exactly the matches of the generic matcher (itself checked against HF) on
// arbitrary strings, including invalid UTF-8.
func FuzzScannersMatchEngine(f *testing.F) {
	for _, s := range adversarial {
		f.Add(s)
	}
	f.Add("a\xffb \x80 'S\xc3")
	type pair struct {
		scan scanner
		re   *reProg
		name string
	}
	var pairs []pair
	for _, p := range []string{gpt2Pattern, llama3Pattern, qwen2Pattern} {
		re, err := compileRegex(p)
		if err != nil {
			f.Fatal(err)
		}
		pairs = append(pairs, pair{scannerFor(p), re, p[:20]})
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range pairs {
			var a, b []int
			p.scan(s, func(st, e int) { a = append(a, st, e) })
			p.re.findAll(s, func(st, e int) { b = append(b, st, e) })
			if j := firstDiff(a, b); j >= 0 {
				t.Fatalf("%q on %q: scanner %v, engine %v", p.name, s, a, b)
			}
		}
	})
}

// TestRegexRefusals: constructs the matcher does not implement are refused with an error that
// names the construct, never run with a different meaning.
func TestRegexRefusals(t *testing.T) {
	for pat, want := range map[string]string{
		`(?<=a)b`:     "group syntax",
		`(?<!a)b`:     "group syntax",
		`(?>a)`:       "group syntax",
		`(?<n>a)`:     "group syntax",
		`(a)\1`:       `escape \1`,
		`\w+`:         `escape \w`,
		`\bx`:         `escape \b`,
		`\h`:          `escape \h`,
		`a*+`:         "possessive",
		`a{2}+`:       "possessive",
		`a{2}*`:       "quantifier applied to a quantifier",
		`a{2}?`:       "{n}?",
		`(?i)a`:       "group syntax",
		`(?i:ss)`:     "multi-character case folding",
		`(?i:st)`:     "multi-character case folding",
		`(?i:s+)`:     "repeated case-insensitive",
		`(?i:é)`:      "non-ASCII literal",
		`(?i:\p{L})`:  "cased characters",
		`(?i:[a-z])`:  "cased characters",
		`[[:alpha:]]`: "POSIX",
		`[a&&b]`:      "intersection",
		`(a*)*`:       "can match the empty string",
		`\p{Alpha}`:   "property",
		`\xFF`:        "raw byte",
		`*a`:          "nothing to repeat",
		`(a`:          "missing )",
		`a)`:          "unmatched )",
		`a{1001}`:     "above 1000",
		`[b-a]`:       "out of order",
		`\Z`:          `escape \Z`,
		`\G`:          `escape \G`,
		`\K`:          `escape \K`,
	} {
		_, err := compileRegex(pat)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("compileRegex(%q) = %v, want an error mentioning %q", pat, err, want)
		}
	}
}

// TestRegexNoBlowup: a pattern with nested quantifiers that takes exponential time in a plain
// backtracking matcher finishes quickly (the matcher remembers failed states).
func TestRegexNoBlowup(t *testing.T) {
	re, err := compileRegex(`(?:x+x+)+y`)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Repeat("x", 300)
	n := 0
	re.findAll(s, func(int, int) { n++ })
	if n != 0 {
		t.Errorf("%d matches in %d x's without y", n, len(s))
	}
}
