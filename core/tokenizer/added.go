package tokenizer

import (
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

// matcher finds added tokens in text as HF's AddedVocabulary does: the leftmost-longest
// non-overlapping matches of all contents (an Aho-Corasick automaton there, a byte trie here),
// each then kept or dropped (single_word) and widened over whitespace (lstrip, rstrip).
type matcher struct {
	nodes []trieNode
	first [256]bool // bytes that start a token
}

type trieNode struct {
	next map[byte]int32
	tok  *AddedToken // a token ends here
}

func newMatcher(toks []*AddedToken) *matcher {
	m := &matcher{nodes: []trieNode{{}}}
	for _, t := range toks {
		if t.Content == "" {
			continue
		}
		m.first[t.Content[0]] = true
		n := int32(0)
		for i := 0; i < len(t.Content); i++ {
			c := t.Content[i]
			nx, ok := m.nodes[n].next[c]
			if !ok {
				if m.nodes[n].next == nil {
					m.nodes[n].next = map[byte]int32{}
				}
				m.nodes = append(m.nodes, trieNode{})
				nx = int32(len(m.nodes) - 1)
				m.nodes[n].next[c] = nx
			}
			n = nx
		}
		m.nodes[n].tok = t
	}
	return m
}

// any reports whether the matcher holds a token.
func (m *matcher) any() bool { return len(m.nodes[0].next) > 0 }

// longestAt returns the longest token that s[i:] starts with, or nil.
func (m *matcher) longestAt(s string, i int) *AddedToken {
	var best *AddedToken
	n := int32(0)
	for j := i; j < len(s); j++ {
		nx, ok := m.nodes[n].next[s[j]]
		if !ok {
			break
		}
		n = nx
		if m.nodes[n].tok != nil {
			best = m.nodes[n].tok
		}
	}
	return best
}

// segment is a piece of the input: either plain text (id < 0) or an added token. start is its
// offset in the text that was split.
type segment struct {
	text  string
	id    int
	start int
}

// isWordChar is \w of Rust's regex crate (which HF uses for single_word): Alphabetic, marks,
// decimal digits, connector punctuation, Join_Control.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.In(r, unicode.Nl, unicode.Other_Alphabetic, unicode.M, unicode.Nd, unicode.Pc, unicode.Join_Control)
}

// split cuts s into plain text and added-token segments and appends them to dst.
func (m *matcher) split(dst []segment, s string) []segment {
	if !m.any() {
		if s != "" {
			dst = append(dst, segment{text: s, id: -1})
		}
		return dst
	}
	last := 0 // end of the previous accepted match (HF's start_offset)
	for i := 0; i < len(s); {
		if !m.first[s[i]] {
			i++
			continue
		}
		t := m.longestAt(s, i)
		if t == nil {
			i++
			continue
		}
		start, end := i, i+len(t.Content)
		i = end // the automaton resumes after the raw match, whatever the filters do
		if t.SingleWord {
			before := start == 0
			if !before {
				r, _ := utf8.DecodeLastRuneInString(s[:start])
				before = !isWordChar(r)
			}
			after := end == len(s)
			if !after {
				r, _ := utf8.DecodeRuneInString(s[end:])
				after = !isWordChar(r)
			}
			if !before || !after {
				continue
			}
		}
		if t.LStrip {
			ns := start
			for ns > 0 {
				r, n := utf8.DecodeLastRuneInString(s[:ns])
				if !unicode.IsSpace(r) || r == utf8.RuneError && n <= 1 {
					break
				}
				ns -= n
			}
			start = max(ns, last)
		}
		if t.RStrip {
			for end < len(s) {
				r, n := utf8.DecodeRuneInString(s[end:])
				if !unicode.IsSpace(r) || r == utf8.RuneError && n <= 1 {
					break
				}
				end += n
			}
		}
		if last < start {
			dst = append(dst, segment{text: s[last:start], id: -1, start: last})
		}
		dst = append(dst, segment{text: s[start:end], id: t.ID, start: start})
		last = end
	}
	if last < len(s) {
		dst = append(dst, segment{text: s[last:], id: -1, start: last})
	}
	return dst
}
