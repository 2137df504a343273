package tokenizer

// Hand-written scanners for the Split patterns of the families this package targets. Each gives
// exactly the matches of its pattern under Oniguruma's leftmost-first semantics (checked against
// the generic matcher in regex.go by FuzzScannersMatchEngine, and against HF on the corpus); they
// exist for speed. A Split whose pattern is not one of these runs on the generic matcher.

// gpt2Pattern is the GPT-2 pattern (HF's ByteLevel pre-tokenizer regex; also written out in
// Split pre-tokenizers).
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// llama3Pattern is Llama 3's Split pattern (tiktoken's cl100k_base); qwen2Pattern is Qwen2's,
// the same with single digits.
const (
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// scanner calls fn with the successive matches of a pattern in s. The scanners here cover every
// character of s with non-empty matches.
type scanner func(s string, fn func(start, end int))

// scannerFor returns the hand-written scanner of a known pattern, or nil.
func scannerFor(pattern string) scanner {
	switch pattern {
	case gpt2Pattern:
		return func(s string, fn func(int, int)) {
			i := 0
			preTokenize(s, func(p string) {
				fn(i, i+len(p))
				i += len(p)
			})
		}
	case llama3Pattern:
		return func(s string, fn func(int, int)) { scanTiktoken(s, 3, fn) }
	case qwen2Pattern:
		return func(s string, fn func(int, int)) { scanTiktoken(s, 1, fn) }
	}
	return nil
}

// foldLower maps a character to the ASCII letter whose case-fold orbit holds it (Oniguruma's
// (?i) matching for the contraction letters: S and ſ match s, K matches k), or 0.
func foldLower(r rune) rune {
	switch {
	case r >= 'A' && r <= 'Z':
		return r + 'a' - 'A'
	case r >= 'a' && r <= 'z':
		return r
	case r == 0x17F: // ſ LATIN SMALL LETTER LONG S
		return 's'
	case r == 0x212A: // K KELVIN SIGN
		return 'k'
	}
	return 0
}

// contractionFoldLen is the length of (?i:'s|'t|'re|'ve|'m|'ll|'d) at s[i] (s[i] == '\”), or 0.
func contractionFoldLen(s string, i int) int {
	if i+1 >= len(s) {
		return 0
	}
	r, n := decodeAt(s, i+1)
	switch foldLower(r) {
	case 's', 't', 'm', 'd':
		return 1 + n
	case 'r', 'v':
		if j := i + 1 + n; j < len(s) {
			if r2, n2 := decodeAt(s, j); foldLower(r2) == 'e' {
				return 1 + n + n2
			}
		}
	case 'l':
		if j := i + 1 + n; j < len(s) {
			if r2, n2 := decodeAt(s, j); foldLower(r2) == 'l' {
				return 1 + n + n2
			}
		}
	}
	return 0
}

// scanTiktoken gives the matches of llama3Pattern (digits 3) or qwen2Pattern (digits 1):
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,digits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func scanTiktoken(s string, digits int, fn func(start, end int)) {
	i := 0
	for i < len(s) {
		start := i
		c, n := classAt(s, i)
		b := s[i]
		var next class = 255
		if i+n < len(s) {
			next, _ = classAt(s, i+n)
		}
		switch {
		case b == '\'' && contractionFoldLen(s, i) > 0:
			i += contractionFoldLen(s, i)
		case c == clsLetter:
			i = runEnd(s, i+n, clsLetter)
		case c != clsNumber && b != '\r' && b != '\n' && next == clsLetter:
			// [^\r\n\p{L}\p{N}]\p{L}+
			i = runEnd(s, i+n, clsLetter)
		case c == clsNumber:
			i += n
			for k := 1; k < digits && i < len(s); k++ {
				c2, n2 := classAt(s, i)
				if c2 != clsNumber {
					break
				}
				i += n2
			}
		case c == clsOther || b == ' ' && next == clsOther:
			//  ?[^\s\p{L}\p{N}]+[\r\n]*
			if b == ' ' {
				i++
			}
			i = runEnd(s, i, clsOther)
			for i < len(s) && (s[i] == '\r' || s[i] == '\n') {
				i++
			}
		default:
			// whitespace: \s*[\r\n]+ ends after the run's last \r or \n; otherwise
			// \s+(?!\S)|\s+ as in the GPT-2 pattern.
			end, lastNL := i, -1
			for end < len(s) {
				c2, n2 := classAt(s, end)
				if c2 != clsSpace {
					break
				}
				if s[end] == '\r' || s[end] == '\n' {
					lastNL = end
				}
				end += n2
			}
			if lastNL >= 0 {
				i = lastNL + 1
			} else {
				i = spaceEnd(s, i)
			}
		}
		fn(start, i)
	}
}
