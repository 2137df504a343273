package tokenizer

import (
	"sort"
	"unicode"
	"unicode/utf8"
)

// AddedToken is one entry of tokenizer.json's "added_tokens" (or of added_tokens.json / the
// special tokens of the fallback layout).
type AddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// matcher finds added tokens in text, leftmost-longest, like HF's aho-corasick tries.
type matcher struct {
	byFirst [256][]*AddedToken // candidates by first byte, longest first
}

func newMatcher(toks []*AddedToken) *matcher {
	m := &matcher{}
	for _, t := range toks {
		if t.Content == "" {
			continue
		}
		b := t.Content[0]
		m.byFirst[b] = append(m.byFirst[b], t)
	}
	for b := range m.byFirst {
		l := m.byFirst[b]
		sort.SliceStable(l, func(i, j int) bool { return len(l[i].Content) > len(l[j].Content) })
	}
	return m
}

// segment is a piece of the input: either plain text (id < 0) or an added token.
type segment struct {
	text string
	id   int
}

// split cuts s into plain text and added-token segments and appends them to dst. lstrip/rstrip
// widen a match over adjacent whitespace
// (single_word is refused by Load).
func (m *matcher) split(dst []segment, s string) []segment {
	last := 0 // end of the previous match
	for i := 0; i < len(s); i++ {
		cands := m.byFirst[s[i]]
		if cands == nil {
			continue
		}
		for _, t := range cands {
			end := i + len(t.Content)
			if end > len(s) || s[i:end] != t.Content {
				continue
			}
			start := i
			if t.LStrip {
				for start > last {
					r, n := utf8.DecodeLastRuneInString(s[last:start])
					if !unicode.IsSpace(r) {
						break
					}
					start -= n
				}
			}
			if t.RStrip {
				for end < len(s) {
					r, n := utf8.DecodeRuneInString(s[end:])
					if !unicode.IsSpace(r) {
						break
					}
					end += n
				}
			}
			if start > last {
				dst = append(dst, segment{text: s[last:start], id: -1})
			}
			dst = append(dst, segment{text: s[start:end], id: t.ID})
			last = end
			i = end - 1
			break
		}
	}
	if last < len(s) {
		dst = append(dst, segment{text: s[last:], id: -1})
	}
	return dst
}
