package tokenizer

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/sugarme/tokenizer/pretokenizer"
)

// Tokenizer is a BPE tokenizer read from a HF tokenizer.json (byte-level BPE as GPT-2, GPT-J,
// GPT-NeoX, Llama 3 and Qwen2 use it, SentencePiece-style BPE with byte fallback as Llama 2 and
// Mistral use it). It is safe for concurrent use.
type Tokenizer struct {
	model    bpe
	special  *matcher // added tokens with normalized=false: matched first, on the raw text
	normal   *matcher // added tokens with normalized=true: matched in the normalized text
	hasAdded bool
	norm     textNormalizer
	steps    []preStep
	plain    *byteLevelStep // no normalizer and the pre-tokenizer is ByteLevel alone: the fast path
	dec      decoder
	byteDec  bool // the decoder is ByteLevel alone: Decode concatenates pieces
	post     postProcessor

	pieces []string       // per id: the text of the token inside a text (raw bytes; "" for holes)
	known  []bool         // per id: whether it exists
	tokens []string       // per id: the vocab string, or the added token's content
	decIn  map[int]string // ids whose decoder input differs from tokens[id] (normalized added tokens)

	bos, eos int
	bosErr   error
	addBOS   *bool
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
	t := &Tokenizer{norm: sp.norm, steps: sp.steps, dec: sp.dec, post: sp.post, bos: -1, eos: -1,
		decIn: map[int]string{}, addBOS: sp.special.addBOS}
	if t.dec == nil {
		t.dec = joinDecoder{}
	}
	_, t.byteDec = t.dec.(byteLevelDecoder)
	if b, ok := singleByteLevel(sp); ok {
		t.plain = &b
	}
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
	byContent := map[string]*AddedToken{}
	for i := range sp.added {
		a := &sp.added[i]
		if a.ID < 0 || a.Content == "" {
			return nil, fmt.Errorf("tokenizer: added token %q has id %d", a.Content, a.ID)
		}
		if prev, dup := byContent[a.Content]; dup {
			if *prev != *a {
				return nil, fmt.Errorf("tokenizer: %s: added token %q is listed twice with different settings", sp.addedFile, a.Content)
			}
			continue
		}
		byContent[a.Content] = a
		size = max(size, a.ID+1)
	}
	// Ids index dense tables: refuse a vocabulary whose ids are far sparser than any real one,
	// which would otherwise make these tables exhaust memory (a fatal error in Go, not a panic).
	if limit := 2*(len(sp.vocab)+len(sp.added)) + 1024; size > limit {
		return nil, fmt.Errorf("tokenizer: %s: token id %d is far beyond the %d tokens defined (ids must stay below %d)",
			sp.mergesFile, size-1, len(sp.vocab)+len(sp.added), limit)
	}
	t.known, t.tokens = make([]bool, size), make([]string, size)
	for tok, id := range sp.vocab {
		if t.known[id] { // decoding the id would depend on map order
			a, b := min(tok, t.tokens[id]), max(tok, t.tokens[id])
			return nil, fmt.Errorf("tokenizer: %s: vocab tokens %q and %q share id %d", sp.mergesFile, a, b, id)
		}
		t.known[id], t.tokens[id] = true, tok
	}

	// Added tokens: the non-normalized ones are matched in the raw text, the normalized ones in
	// the normalized text, by their normalized content (HF's AddedVocabulary); an added token
	// decodes from that normalized form too.
	var specials, normals []*AddedToken
	normalizedFrom := map[string]string{}
	for i := range sp.added {
		a := byContent[sp.added[i].Content]
		if a != &sp.added[i] {
			continue // a duplicate
		}
		t.known[a.ID], t.tokens[a.ID] = true, a.Content
		if !a.Normalized {
			specials = append(specials, a)
			continue
		}
		m := *a
		if t.norm != nil {
			m.Content = t.norm.normalize(a.Content)
			if m.Content != a.Content {
				t.decIn[a.ID] = m.Content
			}
		}
		if m.Content == "" {
			return nil, fmt.Errorf("tokenizer: %s: unsupported added token %q, empty once normalized", sp.addedFile, a.Content)
		}
		if other, dup := normalizedFrom[m.Content]; dup {
			// HF builds its automaton from a hash map: which of two tokens with the same
			// normalized text it finds is not determined.
			return nil, fmt.Errorf("tokenizer: %s: unsupported added tokens %q and %q, the same text %q once normalized (HF matches either)", sp.addedFile, other, a.Content, m.Content)
		}
		normalizedFrom[m.Content] = a.Content
		normals = append(normals, &m)
	}
	t.special, t.normal, t.hasAdded = newMatcher(specials), newMatcher(normals), len(byContent) > 0

	if err := t.buildModel(sp, enc, dec); err != nil {
		return nil, err
	}

	// pieces: each token as it reads inside a text, for TokenString and the byte-level Decode.
	t.pieces = make([]string, size)
	var buf []byte
	bl := byteLevelDecoder{dec}
	for id := range t.known {
		if !t.known[id] {
			continue
		}
		in := t.decoderInput(id)
		if t.byteDec {
			buf = bl.tokenBytes(buf[:0], in)
			t.pieces[id] = string(buf)
		} else {
			t.pieces[id] = strings.Join(t.dec.decodeChain([]string{in}, true, true), "")
		}
	}
	t.resolveSpecial(sp)
	return t, nil
}

// singleByteLevel reports whether the pipeline is GPT-2's (no normalizer, ByteLevel alone).
func singleByteLevel(sp *spec) (byteLevelStep, bool) {
	if sp.norm != nil || len(sp.steps) != 1 {
		return byteLevelStep{}, false
	}
	b, ok := sp.steps[0].(byteLevelStep)
	return b, ok
}

func (t *Tokenizer) buildModel(sp *spec, enc [256]string, dec map[rune]byte) error {
	m := &t.model
	m.byteLevel, m.vocab, m.fuseUnk = sp.byteLevel, sp.vocab, sp.fuseUnk
	m.byteFallback, m.ignoreMerges = sp.byteFallback, sp.ignoreMerges
	m.byteChar = &enc
	m.allBytes = true
	for b := 0; b < 256; b++ {
		m.byteID[b] = -1
		if id, ok := sp.vocab[enc[b]]; ok {
			m.byteID[b] = int32(id)
		} else {
			m.allBytes = false
		}
		m.fallback[b] = -1
		if id, ok := sp.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.fallback[b] = int32(id)
		}
	}
	m.unk = -1
	if sp.unkToken != nil {
		id, ok := sp.vocab[*sp.unkToken]
		if !ok {
			return fmt.Errorf("tokenizer: %s: model.unk_token %q is not in the model's vocab", sp.mergesFile, *sp.unkToken)
		}
		m.unk = int32(id)
	}
	if m.ignoreMerges {
		m.whole = make(map[string]int32, len(sp.vocab))
		for tok, id := range sp.vocab {
			if !m.byteLevel {
				m.whole[tok] = int32(id)
				continue
			}
			raw := make([]byte, 0, len(tok))
			ok := true
			for _, r := range tok {
				b, in := dec[r]
				if !in {
					ok = false
					break
				}
				raw = append(raw, b)
			}
			if ok {
				m.whole[string(raw)] = int32(id)
			}
		}
	}
	m.merges = make(map[pair]merge, len(sp.merges))
	for rank, mg := range sp.merges {
		where := fmt.Sprintf("%s: merge %d", sp.mergesFile, rank)
		if rank < len(sp.mergeLine) {
			where = fmt.Sprintf("%s:%d", sp.mergesFile, sp.mergeLine[rank])
		}
		a, okA := sp.vocab[mg[0]]
		b, okB := sp.vocab[mg[1]]
		c, okC := sp.vocab[mg[0]+mg[1]]
		if !okA || !okB || !okC {
			return fmt.Errorf("tokenizer: %s: merge %q %q uses a token missing from the vocab", where, mg[0], mg[1])
		}
		m.merges[pair{int32(a), int32(b)}] = merge{rank: int32(rank), id: int32(c)}
	}
	m.cache = newWordCache(1<<17, 256)
	if m.byteLevel {
		m.vocab = nil // byte-level mode reads byteID (and whole), not the vocab
	}
	return nil
}

// decoderInput is the token string HF's decoder receives for id (which must exist).
func (t *Tokenizer) decoderInput(id int) string {
	if s, ok := t.decIn[id]; ok {
		return s
	}
	return t.tokens[id]
}

// tokenID is HF's token_to_id: an added token's id, else the vocab's.
func (t *Tokenizer) tokenID(content string, sp *spec) (int, bool) {
	for _, a := range sp.added {
		if a.Content == content {
			return a.ID, true
		}
	}
	id, ok := sp.vocab[content]
	return id, ok
}

// resolveSpecial sets the BOS and EOS ids from the config files, else (BOS only) from the
// post-processor's template.
func (t *Tokenizer) resolveSpecial(sp *spec) {
	c := sp.special
	lookup := func(nt namedToken, what string) (int, error) {
		if nt.content == "" {
			return -1, fmt.Errorf("tokenizer: this tokenizer has no %s token: %s sets %s_token to null", what, nt.file, strings.ToLower(what))
		}
		id, ok := t.tokenID(nt.content, sp)
		if !ok {
			return -1, fmt.Errorf("tokenizer: %s token %q named by %s is not in the vocabulary", what, nt.content, nt.file)
		}
		return id, nil
	}
	switch {
	case c.conflict != "":
		t.bosErr = fmt.Errorf("tokenizer: ambiguous BOS token: %s", c.conflict)
	case c.bos.set:
		t.bos, t.bosErr = lookup(c.bos, "BOS")
	default:
		if tp, ok := leadingTemplate(sp.post); ok && tp >= 0 && tp < len(t.known) && t.known[tp] {
			t.bos = tp
		} else {
			t.bosErr = errors.New("tokenizer: this tokenizer names no BOS token (no bos_token in tokenizer_config.json or special_tokens_map.json, and its post-processor adds none)")
		}
	}
	if c.eos.set {
		t.eos, _ = lookup(c.eos, "EOS")
	}
}

// leadingTemplate is the special token a TemplateProcessing (possibly in a Sequence) puts before
// the sequence.
func leadingTemplate(p postProcessor) (int, bool) {
	switch p := p.(type) {
	case templatePost:
		id := p.leadingSpecial()
		return id, id >= 0
	case postSequence:
		for _, q := range p {
			if id, ok := leadingTemplate(q); ok {
				return id, true
			}
		}
	}
	return -1, false
}

// checkAddedIDs verifies that the id of every added token is the one HF tokenizers gives it. HF
// does not read the ids of tokenizer.json's added_tokens: it adds the list in order, a token
// already added or in the model's vocabulary keeps that id, a new one gets the next id, starting
// at the model's vocabulary size (its number of entries); it only warns when the file says
// otherwise. A file where the two disagree is refused, so that ids never differ from either the
// file or HF. A new id that collides with a vocab id is refused too.
func checkAddedIDs(sp *spec) error {
	next := len(sp.vocab)
	taken := make(map[int]bool, len(sp.vocab))
	for _, id := range sp.vocab {
		taken[id] = true
	}
	assigned := map[string]int{}
	for _, a := range sp.added {
		want, ok := assigned[a.Content]
		if !ok {
			want, ok = sp.vocab[a.Content]
		}
		if !ok {
			want = next
			next++
			if taken[want] {
				return fmt.Errorf("tokenizer: %s: added token %q gets id %d from HF tokenizers, which a vocab token already has (the vocab's ids are not 0..%d)",
					sp.addedFile, a.Content, want, len(sp.vocab)-1)
			}
		}
		assigned[a.Content] = want
		if a.ID != want {
			return fmt.Errorf("tokenizer: %s: added token %q has id %d but HF tokenizers assigns it %d (added tokens get ids in list order after the vocabulary)",
				sp.addedFile, a.Content, a.ID, want)
		}
	}
	return nil
}

// Encode returns the token ids of text as HF's encode(text, add_special_tokens=False) gives
// them (no BOS; see EncodeSpecial, BOS and BOSToken). Added and special tokens written in the
// text are matched as HF tokenizers matches them.
func (t *Tokenizer) Encode(text string) []int {
	ids := make([]int, 0, len(text)/4+4)
	if !t.hasAdded {
		return t.encodeSegment(ids, text, true)
	}
	var segs [16]segment
	for _, s := range t.special.split(segs[:0], text) {
		if s.id >= 0 {
			ids = append(ids, s.id)
		} else {
			ids = t.encodeSegment(ids, s.text, s.start == 0)
		}
	}
	return ids
}

// EncodeSpecial is HF's encode(text) with add_special_tokens=True: Encode, then the special
// tokens tokenizer.json's post-processor adds (Llama's BOS, for one). Without a post-processor
// it is Encode.
func (t *Tokenizer) EncodeSpecial(text string) []int {
	ids := t.Encode(text)
	if t.post != nil {
		ids = t.post.single(ids)
	}
	return ids
}

// encodeSegment normalizes a piece of text that holds no non-normalized added token, splits out
// the normalized added tokens and encodes the rest. origin tells whether it starts the text.
func (t *Tokenizer) encodeSegment(ids []int, text string, origin bool) []int {
	if t.norm != nil {
		text = t.norm.normalize(text)
	}
	if !t.normal.any() {
		return t.encodeNormalized(ids, text, origin)
	}
	var segs [16]segment
	for _, s := range t.normal.split(segs[:0], text) {
		if s.id >= 0 {
			ids = append(ids, s.id)
		} else {
			ids = t.encodeNormalized(ids, s.text, origin && s.start == 0)
		}
	}
	return ids
}

// encodeNormalized pre-tokenizes and BPE-encodes normalized text that holds no added token.
func (t *Tokenizer) encodeNormalized(ids []int, text string, origin bool) []int {
	if t.plain != nil {
		return t.encodePlain(ids, text)
	}
	if len(t.steps) == 0 {
		return t.model.encodeWord(ids, text)
	}
	t.preTokenize(0, text, origin, &ids)
	return ids
}

func (t *Tokenizer) preTokenize(k int, s string, origin bool, ids *[]int) {
	if k == len(t.steps) {
		*ids = t.model.encodeWord(*ids, s)
		return
	}
	t.steps[k].apply(s, origin, func(p string, o bool) { t.preTokenize(k+1, p, o, ids) })
}

// encodePlain is the GPT-2 pipeline: ByteLevel pre-tokenization and byte-level BPE.
func (t *Tokenizer) encodePlain(ids []int, text string) []int {
	if text == "" {
		return ids
	}
	if t.plain.addPrefixSpace && !strings.HasPrefix(text, " ") {
		text = " " + text
	}
	if !t.plain.useRegex {
		return t.model.encodeWord(ids, text)
	}
	preTokenize(text, func(w string) { ids = t.model.encodeWord(ids, w) })
	return ids
}

func (t *Tokenizer) checkIDs(ids []int) error {
	for i, id := range ids {
		if id < 0 || id >= len(t.known) || !t.known[id] {
			return fmt.Errorf("tokenizer: decode: unknown token id %d at position %d (vocabulary size %d)", id, i, len(t.known))
		}
	}
	return nil
}

// decodeChain runs the decoder over ids (all known).
func (t *Tokenizer) decodeChain(ids []int, raw bool) string {
	toks := make([]string, len(ids))
	for i, id := range ids {
		toks[i] = t.decoderInput(id)
	}
	return strings.Join(t.dec.decodeChain(toks, raw, false), "")
}

// Decode returns the text of ids as tokenizer.json's decoder makes it, keeping bytes raw: a
// byte-level tokenizer gives the concatenated bytes of the tokens and a byte-fallback one the
// bytes of its <0xNN> tokens, so that a partial UTF-8 sequence is kept as is (DecodeText gives
// HF's text, with U+FFFD). An id outside the vocabulary is an error naming it (HF skips it).
func (t *Tokenizer) Decode(ids []int) (string, error) {
	if err := t.checkIDs(ids); err != nil {
		return "", err
	}
	if !t.byteDec {
		return t.decodeChain(ids, true), nil
	}
	var sb strings.Builder
	sb.Grow(len(ids) * 4)
	for _, id := range ids {
		sb.WriteString(t.pieces[id])
	}
	return sb.String(), nil
}

// TokenString returns a display form of one token: its text as it reads inside a text (a
// byte-level token's bytes, a SentencePiece token with ▁ as a space, a <0xNN> token as its
// byte), with bytes that are not valid UTF-8 on their own (a token holding part of a character)
// written as \xNN, and "<unknown id N>" for an id outside the vocabulary.
func (t *Tokenizer) TokenString(id int) string {
	if id < 0 || id >= len(t.known) || !t.known[id] {
		return fmt.Sprintf("<unknown id %d>", id)
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

// Token returns the vocabulary string of id (byte-level form, e.g. "Ġthe"; an added token's
// content) and whether it exists.
func (t *Tokenizer) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.known) || !t.known[id] {
		return "", false
	}
	return t.tokens[id], true
}

// VocabSize is the number of ids, largest id + 1 (50400 for GPT-J).
func (t *Tokenizer) VocabSize() int { return len(t.known) }

// BOS is the id of the BOS token the tokenizer names (tokenizer_config.json's bos_token, else
// special_tokens_map.json's, else the special token tokenizer.json's post-processor puts first),
// or -1 when it names none (BOSToken says why). 50256 (<|endoftext|>) for GPT-2 / GPT-J.
func (t *Tokenizer) BOS() int { return t.bos }

// BOSToken is BOS for prepend_bos: the id, or an error that says why the tokenizer has no BOS
// (Qwen2's tokenizer_config.json sets bos_token to null, for one).
func (t *Tokenizer) BOSToken() (int, error) {
	if t.bos < 0 {
		return -1, t.bosErr
	}
	return t.bos, nil
}

// EOS is the id of tokenizer_config.json's (else special_tokens_map.json's) eos_token, or -1.
func (t *Tokenizer) EOS() int { return t.eos }

// AddsBOS reports whether tokenizers built from this directory add BOS when encoding with
// special tokens: tokenizer_config.json's add_bos_token when it sets it, otherwise whether
// EncodeSpecial puts the BOS first.
func (t *Tokenizer) AddsBOS() bool {
	if t.addBOS != nil {
		return *t.addBOS
	}
	id, ok := leadingTemplate(t.post)
	return ok && t.bos >= 0 && id == t.bos
}
