package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// class is the character class used by the GPT-2 pattern.
type class uint8

const (
	clsOther  class = iota // [^\s\p{L}\p{N}], also every invalid UTF-8 byte
	clsLetter              // \p{L}
	clsNumber              // \p{N}
	clsSpace               // \s
)

// asciiClass holds the class of every ASCII byte.
var asciiClass = func() (t [utf8.RuneSelf]class) {
	for b := 0; b < utf8.RuneSelf; b++ {
		t[b] = classOfRune(rune(b))
	}
	return t
}()

// classOfRune gives the class of a valid rune. Oniguruma's \s (HF's regex engine) is
// \t \n \v \f \r, U+0085 and the Zs, Zl, Zp categories, which is the White_Space set that
// unicode.IsSpace implements.
func classOfRune(r rune) class {
	switch {
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	case unicode.IsSpace(r):
		return clsSpace
	}
	return clsOther
}

// classAt returns the class and byte width of the character at s[i] (i < len(s)). An invalid
// UTF-8 byte is one character of class clsOther.
func classAt(s string, i int) (class, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && n <= 1 {
		return clsOther, 1
	}
	return classOfRune(r), n
}

// runEnd returns the end of the maximal run of characters of class c starting at i.
func runEnd(s string, i int, c class) int {
	for i < len(s) {
		ci, n := classAt(s, i)
		if ci != c {
			break
		}
		i += n
	}
	return i
}

// contractionLen returns the length of a contraction ('s 't 're 've 'm 'll 'd, lowercase only as in
// GPT-2's pattern) at s[i] (s[i] == '\”), or 0.
func contractionLen(s string, i int) int {
	if i+1 >= len(s) {
		return 0
	}
	switch s[i+1] {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if i+2 < len(s) && s[i+2] == 'e' {
			return 3
		}
	case 'l':
		if i+2 < len(s) && s[i+2] == 'l' {
			return 3
		}
	}
	return 0
}

// preTokenize splits s exactly as HF's ByteLevel pre-tokenizer does with the GPT-2 pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// (leftmost-first alternatives, non-overlapping matches; every character is covered), calling fn
// with each piece in order. Pieces are substrings of s.
func preTokenize(s string, fn func(piece string)) {
	i := 0
	for i < len(s) {
		start := i
		c, n := classAt(s, i)
		switch {
		case s[i] == '\'' && contractionLen(s, i) > 0:
			i += contractionLen(s, i)
		case c == clsSpace && s[i] == ' ' && i+1 < len(s):
			// " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+" with the optional space.
			if c2, _ := classAt(s, i+1); c2 != clsSpace {
				i = runEnd(s, i+1, c2)
			} else {
				i = spaceEnd(s, i)
			}
		case c == clsSpace:
			i = spaceEnd(s, i)
		default:
			i = runEnd(s, i+n, c)
		}
		fn(s[start:i])
	}
}

// spaceEnd implements `\s+(?!\S)|\s+` at i (a whitespace character): the whole run when it ends
// the text, otherwise the run without its last character, or the single character when the run
// has length one.
func spaceEnd(s string, i int) int {
	end, last := i, 0
	for end < len(s) {
		c, n := classAt(s, end)
		if c != clsSpace {
			break
		}
		end, last = end+n, n
	}
	if end == len(s) || end-last == i {
		return end
	}
	return end - last
}
