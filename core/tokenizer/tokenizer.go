package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/sugarme/tokenizer/pretokenizer"
)

// Tokenizer is a byte-level BPE tokenizer (GPT-2 / GPT-J). It is safe for concurrent use.
type Tokenizer struct {
	model          bpe
	special        *matcher // added tokens with normalized=false: matched first, on the raw text
	normal         *matcher // added tokens with normalized=true: matched in what remains
	hasAdded       bool
	addPrefixSpace bool
	useRegex       bool
	pieces         []string // decoded bytes of every id ("" and known[id]=false for holes)
	known          []bool
	badSymbol      map[int]string // ids whose vocab string has a character outside the alphabet
	tokens         []string       // vocab / added-token string of every id
	bos            int
}

// byteLevel returns the byte → character table of the byte-level alphabet (sugarme's table) and
// its inverse, checking that it is a bijection onto 256 characters.
func byteLevel() (enc [256]string, dec map[rune]byte, err error) {
	dec = make(map[rune]byte, 256)
	for b := 0; b < 256; b++ {
		s, ok := pretokenizer.BytesChar[uint8(b)]
		r, n := utf8.DecodeRuneInString(s)
		if !ok || n != len(s) || r == utf8.RuneError {
			return enc, nil, fmt.Errorf("tokenizer: byte-level table has no single character for byte %d", b)
		}
		if _, dup := dec[r]; dup {
			return enc, nil, fmt.Errorf("tokenizer: byte-level table maps two bytes to %q", s)
		}
		enc[b], dec[r] = s, byte(b)
	}
	return enc, dec, nil
}

func build(sp *spec) (*Tokenizer, error) {
	enc, dec, err := byteLevel()
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{addPrefixSpace: sp.addPrefixSpace, useRegex: sp.useRegex, bos: -1,
		badSymbol: map[int]string{}}
	if err := checkAddedIDs(sp); err != nil {
		return nil, err
	}
	size := 0
	for tok, id := range sp.vocab {
		if id < 0 {
			return nil, fmt.Errorf("tokenizer: %s: vocab token %q has negative id %d", sp.mergesFile, tok, id)
		}
		size = max(size, id+1)
	}
	for _, a := range sp.added {
		if a.ID < 0 || a.Content == "" {
			return nil, fmt.Errorf("tokenizer: added token %q has id %d", a.Content, a.ID)
		}
		if a.SingleWord {
			return nil, fmt.Errorf("tokenizer: added token %q: single_word is not supported", a.Content)
		}
		size = max(size, a.ID+1)
	}
	// Ids index dense tables: refuse a vocabulary whose ids are far sparser than any real one,
	// which would otherwise make these tables exhaust memory (a fatal error in Go, not a panic).
	if limit := 2*(len(sp.vocab)+len(sp.added)) + 1024; size > limit {
		return nil, fmt.Errorf("tokenizer: %s: token id %d is far beyond the %d tokens defined (ids must stay below %d)",
			sp.mergesFile, size-1, len(sp.vocab)+len(sp.added), limit)
	}
	t.pieces, t.known, t.tokens = make([]string, size), make([]bool, size), make([]string, size)
	var buf []byte
	for tok, id := range sp.vocab {
		if t.known[id] { // decoding the id would depend on map order
			a, b := min(tok, t.tokens[id]), max(tok, t.tokens[id])
			return nil, fmt.Errorf("tokenizer: %s: vocab tokens %q and %q share id %d", sp.mergesFile, a, b, id)
		}
		buf = buf[:0]
		for _, r := range tok {
			b, ok := dec[r]
			if !ok {
				t.badSymbol[id] = string(r)
				break
			}
			buf = append(buf, b)
		}
		t.pieces[id], t.known[id], t.tokens[id] = string(buf), true, tok
	}
	// Added tokens decode to their content, whatever the vocab holds for that id.
	var specials, normals []*AddedToken
	for i := range sp.added {
		a := &sp.added[i]
		t.pieces[a.ID], t.known[a.ID], t.tokens[a.ID] = a.Content, true, a.Content
		delete(t.badSymbol, a.ID)
		if a.Normalized {
			normals = append(normals, a)
		} else {
			specials = append(specials, a)
		}
		if a.Content == "<|endoftext|>" {
			t.bos = a.ID
		}
	}
	if id, ok := sp.vocab["<|endoftext|>"]; ok && t.bos < 0 {
		t.bos = id
	}
	t.special, t.normal, t.hasAdded = newMatcher(specials), newMatcher(normals), len(sp.added) > 0

	for b := 0; b < 256; b++ {
		id, ok := sp.vocab[enc[b]]
		if !ok {
			return nil, fmt.Errorf("tokenizer: %s: vocab lacks the byte-level token %q of byte %d", sp.mergesFile, enc[b], b)
		}
		t.model.byteID[b] = int32(id)
	}
	t.model.merges = make(map[pair]merge, len(sp.merges))
	for rank, mg := range sp.merges {
		where := fmt.Sprintf("%s: merge %d", sp.mergesFile, rank)
		if rank < len(sp.mergeLine) {
			where = fmt.Sprintf("%s:%d", sp.mergesFile, sp.mergeLine[rank])
		}
		a, okA := sp.vocab[mg[0]]
		b, okB := sp.vocab[mg[1]]
		c, okC := sp.vocab[mg[0]+mg[1]]
		if !okA || !okB || !okC {
			return nil, fmt.Errorf("tokenizer: %s: merge %q %q uses a token missing from the vocab", where, mg[0], mg[1])
		}
		t.model.merges[pair{int32(a), int32(b)}] = merge{rank: int32(rank), id: int32(c)}
	}
	t.model.cache = newWordCache(1<<17, 256)
	return t, nil
}

// checkAddedIDs verifies that the id of every added token is the one HF tokenizers gives it. HF
// does not read the ids of tokenizer.json's added_tokens: it adds the list in order, a token
// already in the model's vocabulary keeps that id, a new one gets the next id after the largest so
// far (at least the model's vocabulary size); it only warns when the file says otherwise. A file
// where the two disagree is refused, so that ids never differ from either the file or HF.
func checkAddedIDs(sp *spec) error {
	next := 0
	for _, id := range sp.vocab {
		next = max(next, id+1)
	}
	assigned := map[string]int{}
	for _, a := range sp.added {
		want, ok := sp.vocab[a.Content]
		if !ok {
			want, ok = assigned[a.Content]
		}
		if !ok {
			want = next
			next++
		}
		assigned[a.Content] = want
		if a.ID != want {
			return fmt.Errorf("tokenizer: %s: added token %q has id %d but HF tokenizers assigns it %d (added tokens get ids in list order after the vocabulary)",
				sp.addedFile, a.Content, a.ID, want)
		}
	}
	return nil
}

// Encode returns the token ids of text (no BOS; callers prepend BOS() for prepend_bos). Added and
// special tokens written in the text are matched as HF tokenizers matches them.
func (t *Tokenizer) Encode(text string) []int {
	ids := make([]int, 0, len(text)/4+4)
	if !t.hasAdded {
		return t.encodePlain(ids, text)
	}
	var segs [16]segment
	for _, s := range t.special.split(segs[:0], text) {
		if s.id >= 0 {
			ids = append(ids, s.id)
			continue
		}
		var inner [16]segment
		for _, s2 := range t.normal.split(inner[:0], s.text) {
			if s2.id >= 0 {
				ids = append(ids, s2.id)
			} else {
				ids = t.encodePlain(ids, s2.text)
			}
		}
	}
	return ids
}

// encodePlain pre-tokenizes and BPE-encodes text that holds no added token.
func (t *Tokenizer) encodePlain(ids []int, text string) []int {
	if t.addPrefixSpace && !strings.HasPrefix(text, " ") {
		text = " " + text
	}
	if !t.useRegex {
		return t.model.encodeWord(ids, text)
	}
	preTokenize(text, func(w string) { ids = t.model.encodeWord(ids, w) })
	return ids
}

// Decode returns the text of ids: the concatenated bytes of the tokens (raw, so that a partial
// UTF-8 sequence is kept as is). An id outside the vocabulary, or whose vocab entry holds a
// character outside the byte-level alphabet, is an error naming it.
func (t *Tokenizer) Decode(ids []int) (string, error) {
	var sb strings.Builder
	sb.Grow(len(ids) * 4)
	for i, id := range ids {
		if id < 0 || id >= len(t.known) || !t.known[id] {
			return "", fmt.Errorf("tokenizer: decode: unknown token id %d at position %d (vocabulary size %d)", id, i, len(t.known))
		}
		if sym, bad := t.badSymbol[id]; bad {
			return "", fmt.Errorf("tokenizer: decode: token id %d (%q) holds symbol %q outside the byte-level alphabet", id, t.tokens[id], sym)
		}
		sb.WriteString(t.pieces[id])
	}
	return sb.String(), nil
}

// TokenString returns a display form of one token: its decoded text, with bytes that are not
// valid UTF-8 on their own (a token holding part of a character) written as \xNN, and
// "<unknown id N>" for an id outside the vocabulary.
func (t *Tokenizer) TokenString(id int) string {
	if id < 0 || id >= len(t.known) || !t.known[id] {
		return fmt.Sprintf("<unknown id %d>", id)
	}
	if _, bad := t.badSymbol[id]; bad {
		return t.tokens[id]
	}
	s := t.pieces[id]
	if utf8.ValidString(s) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			fmt.Fprintf(&sb, `\x%02x`, s[i])
		} else {
			sb.WriteString(s[i : i+n])
		}
		i += n
	}
	return sb.String()
}

// Token returns the vocabulary string of id (byte-level form, e.g. "Ġthe") and whether it exists.
func (t *Tokenizer) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.known) || !t.known[id] {
		return "", false
	}
	return t.tokens[id], true
}

// VocabSize is the number of ids, largest id + 1 (50400 for GPT-J).
func (t *Tokenizer) VocabSize() int { return len(t.known) }

// BOS is the id of <|endoftext|> (50256 for GPT-2 / GPT-J), or -1 when the vocabulary lacks it.
func (t *Tokenizer) BOS() int { return t.bos }
