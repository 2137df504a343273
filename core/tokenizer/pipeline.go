package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ---- normalizers ----

// normalizer is one of tokenizer.json's normalizers, applied to a piece of text that holds no
// non-normalized added token.
type textNormalizer interface {
	normalize(s string) string
}

// mapValid applies f to each maximal valid UTF-8 run of s and keeps invalid bytes as they are
// (HF only sees valid text; this keeps Go's invalid bytes through normalization).
func mapValid(s string, f func(string) string) string {
	if utf8.ValidString(s) {
		return f(s)
	}
	var b strings.Builder
	start := 0
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			b.WriteString(f(s[start:i]))
			b.WriteByte(s[i])
			i++
			start = i
			continue
		}
		i += n
	}
	b.WriteString(f(s[start:]))
	return b.String()
}

// unicodeNorm is NFC, NFD, NFKC or NFKD.
type unicodeNorm struct{ form norm.Form }

func (u unicodeNorm) normalize(s string) string { return mapValid(s, u.form.String) }

// lowercase is Rust's char::to_lowercase per character: the simple mapping, except İ (U+0130),
// whose full lowercase is i + U+0307.
type lowercase struct{}

func (lowercase) normalize(s string) string {
	return mapValid(s, func(v string) string {
		var b strings.Builder
		b.Grow(len(v))
		for _, r := range v {
			if r == 0x130 {
				b.WriteString("i\u0307")
				continue
			}
			b.WriteRune(unicode.ToLower(r))
		}
		return b.String()
	})
}

// prepend adds its text in front of a non-empty piece.
type prepend struct{ text string }

func (p prepend) normalize(s string) string {
	if s == "" {
		return s
	}
	return p.text + s
}

// replace replaces every match of a pattern (a literal string or an Oniguruma regex) with content.
type replace struct {
	literal string // pattern {"String": ...}
	re      *reProg
	content string
}

func (r replace) normalize(s string) string { return r.apply(s) }

func (r replace) apply(s string) string {
	if r.re == nil {
		return strings.ReplaceAll(s, r.literal, r.content)
	}
	var b strings.Builder
	last := 0
	r.re.findAll(s, func(start, end int) {
		b.WriteString(s[last:start])
		b.WriteString(r.content)
		last = end
	})
	b.WriteString(s[last:])
	return b.String()
}

type normSequence []textNormalizer

func (q normSequence) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

// ---- pre-tokenizers ----

// preStep is one pre-tokenizer. apply calls emit with the non-empty pieces of s in order. origin
// tells whether s starts at offset 0 of the input text (HF's offsets_original().0 == 0, which
// Metaspace with prepend_scheme "first" reads); a step passes it on to the piece at offset 0.
type preStep interface {
	apply(s string, origin bool, emit func(piece string, origin bool))
}

// behavior is a SplitDelimiterBehavior.
type behavior uint8

const (
	isolated behavior = iota
	removed
	mergedWithPrevious
	mergedWithNext
	contiguous
)

// span is one part of a split: a match of the pattern or the text between two matches.
type span struct {
	start, end int
	match      bool
}

// emitSpans applies a SplitDelimiterBehavior to spans that cover s in order (HF's
// NormalizedString::split) and emits the non-empty pieces.
func emitSpans(s string, spans []span, b behavior, origin bool, emit func(string, bool)) {
	out := spans[:0:0]
	switch b {
	case isolated:
		out = spans
	case removed:
		for _, sp := range spans {
			if !sp.match {
				out = append(out, sp)
			}
		}
	case contiguous:
		prevMatch := false
		for _, sp := range spans {
			if len(out) > 0 && sp.match == prevMatch {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, span{sp.start, sp.end, false})
			}
			prevMatch = sp.match
		}
	case mergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, span{sp.start, sp.end, false})
			}
			prevMatch = sp.match
		}
	case mergedWithNext:
		prevMatch := false
		for k := len(spans) - 1; k >= 0; k-- {
			sp := spans[k]
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].start = sp.start
			} else {
				out = append(out, span{sp.start, sp.end, false})
			}
			prevMatch = sp.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	for _, sp := range out {
		if sp.end > sp.start {
			emit(s[sp.start:sp.end], origin && sp.start == 0)
		}
	}
}

// matchSpans turns the matches of a pattern in s into spans covering s (HF's
// Pattern::find_matches), flipping the match flags when invert is set.
func matchSpans(s string, find func(s string, fn func(start, end int)), invert bool) []span {
	var spans []span
	prev := 0
	find(s, func(start, end int) {
		if prev != start {
			spans = append(spans, span{prev, start, invert})
		}
		spans = append(spans, span{start, end, !invert})
		prev = end
	})
	if prev != len(s) {
		spans = append(spans, span{prev, len(s), invert})
	}
	return spans
}

// charSpans is find_matches for a character predicate: each matching character is its own
// match.
func charSpans(s string, pred func(rune) bool) []span {
	var spans []span
	last := 0
	for i := 0; i < len(s); {
		r, n := decodeAt(s, i)
		if r != invalidRune && pred(r) {
			if last < i {
				spans = append(spans, span{last, i, false})
			}
			spans = append(spans, span{i, i + n, true})
			last = i + n
		}
		i += n
	}
	if last < len(s) {
		spans = append(spans, span{last, len(s), false})
	}
	return spans
}

// splitStep is the Split pre-tokenizer.
type splitStep struct {
	find     func(s string, fn func(start, end int))
	behavior behavior
	invert   bool
}

func (st *splitStep) apply(s string, origin bool, emit func(string, bool)) {
	if s == "" {
		return
	}
	if st.behavior == isolated && !st.invert {
		prev := 0
		st.find(s, func(start, end int) {
			if prev < start {
				emit(s[prev:start], origin && prev == 0)
			}
			if start < end {
				emit(s[start:end], origin && start == 0)
			}
			prev = end
		})
		if prev < len(s) {
			emit(s[prev:], origin && prev == 0)
		}
		return
	}
	emitSpans(s, matchSpans(s, st.find, st.invert), st.behavior, origin, emit)
}

// digitsStep is the Digits pre-tokenizer (Rust's char::is_numeric: the N categories).
type digitsStep struct{ individual bool }

func (d digitsStep) apply(s string, origin bool, emit func(string, bool)) {
	if s == "" {
		return
	}
	b := contiguous
	if d.individual {
		b = isolated
	}
	emitSpans(s, charSpans(s, unicode.IsNumber), b, origin, emit)
}

// prependScheme is Metaspace's prepend_scheme.
type prependScheme uint8

const (
	prependAlways prependScheme = iota
	prependFirst
	prependNever
)

// metaspaceStep is the Metaspace pre-tokenizer: spaces become the replacement character, which is
// prepended as the scheme says, and the piece is split before each replacement character when
// split is set.
type metaspaceStep struct {
	rep    rune
	repStr string
	scheme prependScheme
	split  bool
}

func (m metaspaceStep) apply(s string, origin bool, emit func(string, bool)) {
	if s == "" {
		return
	}
	s = strings.ReplaceAll(s, " ", m.repStr)
	switch m.scheme {
	case prependAlways:
		if !strings.HasPrefix(s, m.repStr) {
			s = m.repStr + s
		}
	case prependFirst:
		if !strings.HasPrefix(s, m.repStr) && origin {
			s = m.repStr + s
		}
	}
	if !m.split {
		emit(s, origin)
		return
	}
	emitSpans(s, charSpans(s, func(r rune) bool { return r == m.rep }), mergedWithNext, origin, emit)
}

// byteLevelStep is the ByteLevel pre-tokenizer (always the last step): an optional prefix space,
// then the GPT-2 pattern when use_regex is set. The mapping of bytes to the byte-level alphabet
// is left to the model, which works on raw bytes in byte-level mode.
type byteLevelStep struct{ addPrefixSpace, useRegex bool }

func (b byteLevelStep) apply(s string, origin bool, emit func(string, bool)) {
	if s == "" {
		return
	}
	if b.addPrefixSpace && !strings.HasPrefix(s, " ") {
		s = " " + s
	}
	if !b.useRegex {
		emit(s, origin)
		return
	}
	first := true
	preTokenize(s, func(p string) {
		emit(p, origin && first)
		first = false
	})
}
