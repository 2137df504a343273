package tokenizer

import (
	"strings"
	"testing"
)

// TestCorpusParity encodes every corpus document and compares with HF tokenizers loading the same
// tokenizer.json; it also checks Decode(Encode(s)) == s.
func TestCorpusParity(t *testing.T) {
	tok, docs := gptj(t), corpus(t)
	var want [][]int
	hf(t, "encode", fixtureJSON(), docs, &want)
	bad, total := 0, 0
	for i, doc := range docs {
		got := tok.Encode(doc)
		total += len(got)
		if j := firstDiff(got, want[i]); j >= 0 {
			if bad < 5 {
				t.Errorf("doc %d (%d chars): first mismatch at token %d of %d/%d: got %v, HF %v", i, len(doc), j,
					len(got), len(want[i]), window(got, j), window(want[i], j))
			}
			bad++
		}
		back, err := tok.Decode(got)
		if err != nil {
			t.Errorf("doc %d: Decode: %v", i, err)
		} else if back != doc {
			t.Errorf("doc %d: Decode(Encode(s)) != s (lengths %d, %d)", i, len(back), len(doc))
		}
	}
	t.Logf("%d documents, %d tokens, %d mismatching documents", len(docs), total, bad)
	if bad > 0 {
		t.Errorf("%d of %d documents differ from HF tokenizers", bad, len(docs))
	}
}

// edgeCases are strings that exercise every alternative of the GPT-2 pattern and the added tokens.
var edgeCases = []struct{ name, input string }{
	{"empty", ""},
	{"single space", " "},
	{"two spaces", "  "},
	{"leading spaces", "   hello"},
	{"trailing spaces", "hello   "},
	{"spaces between", "a    b"},
	{"tabs", "\t\tx\t"},
	{"newlines a\\n\\nb", "a\n\nb"},
	{"leading newlines", "\n\n\nfoo"},
	{"trailing newlines", "foo\n\n"},
	{"mixed whitespace", " \t\n \r\n  x \n\t y\t \n"},
	{"crlf", "line one\r\nline two\r\n\r\nend"},
	{"space before newline", "a \nb"},
	{"spaces then punct", "x   !!"},
	{"unicode spaces", "a\u00a0b\u3000c\u2009d\u2028e\u0085f"},
	{"contractions", "it's don't we're they've I'm we'll he'd"},
	{"contractions upper", "IT'S DON'T WE'RE THEY'VE I'M WE'LL HE'D It'S"},
	{"apostrophe edge", "'s 'S '' 'x rock'n'roll ' s"},
	{"apostrophe after space", "a 's b"},
	{"digits", "0 1 12 123 1234 12345 3.14159 -42"},
	{"long number", "123456789012345678901234567890"},
	{"number letters", "abc123def 4th 1st"},
	{"punctuation runs", "!!! ... ?!?! --- === ((())) {}[]<>"},
	{"code", "func main() {\n\tfmt.Println(\"hi\")\n}\n"},
	{"emoji", "I ❤️ 🍕 and 😀😃"},
	{"zwj sequences", "👨‍👩‍👧‍👦 🏳️‍🌈 👩🏽‍💻"},
	{"cjk", "你好，世界。日本語のテキスト。한국어"},
	{"cyrillic", "Привет, мир! Ёжик"},
	{"combining marks", "e\u0301 n\u0303 a\u0308\u0308 क्षि"},
	{"arabic hebrew", "مرحبا שלום"},
	{"superscripts fractions", "x² ½ Ⅻ ①"},
	{"endoftext literal", "hello<|endoftext|>world"},
	{"endoftext spaced", "a <|endoftext|> b <|endoftext|><|endoftext|>"},
	{"extratoken literal", "x <|extratoken_7|>y"},
	{"extratoken longest", "<|extratoken_14|><|extratoken_143|><|extratoken_1|>"},
	{"partial special", "<|endoftext| <|extratoken_|> <|"},
	{"replacement char", "a\ufffdb"},
	{"control chars", "\x00\x01\x1b[0m\x7f"},
	{"long word", strings.Repeat("abc", 200)},
	{"long punct", strings.Repeat("=-", 300)},
}

// TestEdgeCases compares Encode with HF tokenizers on edgeCases and checks the round trip.
func TestEdgeCases(t *testing.T) {
	tok := gptj(t)
	texts := make([]string, len(edgeCases))
	for i, c := range edgeCases {
		texts[i] = c.input
	}
	var want [][]int
	hf(t, "encode", fixtureJSON(), texts, &want)
	for i, c := range edgeCases {
		t.Run(c.name, func(t *testing.T) {
			got := tok.Encode(c.input)
			if j := firstDiff(got, want[i]); j >= 0 {
				t.Errorf("Encode(%q) = %v, HF %v (first difference at %d)", c.input, got, want[i], j)
			}
			back, err := tok.Decode(got)
			if err != nil || back != c.input {
				t.Errorf("Decode(Encode(%q)) = %q, %v", c.input, back, err)
			}
		})
	}
}

// TestPreTokenizerMatchesHF compares the scanner's pieces with HF's ByteLevel pre-tokenizer on the
// edge strings without added tokens and on 300 corpus documents.
func TestPreTokenizerMatchesHF(t *testing.T) {
	var texts []string
	for _, c := range edgeCases {
		if !strings.Contains(c.input, "<|") {
			texts = append(texts, c.input)
		}
	}
	texts = append(texts, corpus(t)[:300]...)
	var want [][]string
	hf(t, "pretok", fixtureJSON(), texts, &want)
	enc, _, err := byteLevel()
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range texts {
		var got []string
		preTokenize(s, func(p string) {
			var sb strings.Builder
			for j := 0; j < len(p); j++ {
				sb.WriteString(enc[p[j]])
			}
			got = append(got, sb.String())
		})
		if strings.Join(got, "\x00") != strings.Join(want[i], "\x00") {
			for j := range min(len(got), len(want[i])) {
				if got[j] != want[i][j] {
					t.Errorf("text %d %.40q: piece %d = %q, HF %q", i, s, j, got[j], want[i][j])
					break
				}
			}
			if len(got) != len(want[i]) {
				t.Errorf("text %d %.40q: %d pieces, HF %d", i, s, len(got), len(want[i]))
			}
		}
	}
}
