package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// DecodeText is HF tokenizers' decode(ids, skip_special_tokens=False): Decode made valid UTF-8
// the way tokenizer.json's decoder does it. The byte-level decoder uses Rust's
// String::from_utf8_lossy (each maximal subpart of an ill-formed sequence becomes one U+FFFD);
// the ByteFallback decoder turns a run of <0xNN> tokens that is not valid UTF-8 into one U+FFFD
// per byte. Token sequences that end inside a character (generation cut short, one token of a
// multi-byte character) decode to text a caller can print and send as a string.
func (t *Tokenizer) DecodeText(ids []int) (string, error) {
	if !t.byteDec {
		if err := t.checkIDs(ids); err != nil {
			return "", err
		}
		return lossyUTF8(t.decodeChain(ids, false)), nil
	}
	s, err := t.Decode(ids)
	if err != nil {
		return "", err
	}
	return lossyUTF8(s), nil
}

func lossyUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || n > 1 {
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		b.WriteRune(utf8.RuneError)
		i += maximalSubpart(s[i:])
	}
	return b.String()
}

// maximalSubpart is the length of the longest prefix of s (which starts an ill-formed sequence)
// that could begin a well-formed UTF-8 sequence (Unicode §3.9, table 3-7); at least 1.
func maximalSubpart(s string) int {
	lo, hi := byte(0x80), byte(0xBF) // the second byte's range
	need := 0                        // continuation bytes after the lead
	switch c := s[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(s); k, lo, hi = k+1, 0x80, 0xBF {
		if s[n] < lo || s[n] > hi {
			break
		}
		n++
	}
	return n
}
