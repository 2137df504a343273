package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// spec is what Load gathers from either layout before building the Tokenizer.
type spec struct {
	vocab      map[string]int
	merges     [][2]string
	mergeLine  []int // source line of each merge (for errors), 0 when unknown
	mergesFile string
	added      []AddedToken
	addedFile  string // where the added tokens come from (for errors)

	norm      textNormalizer // nil: none
	steps     []preStep      // pre-tokenizers, in order (ByteLevel only last)
	byteLevel bool           // the last pre-tokenizer is ByteLevel: the model works on bytes
	dec       decoder        // nil: HF joins tokens with spaces
	post      postProcessor  // nil: none

	unkToken     *string
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool

	special specialConfig
}

// Load reads the tokenizer of a model directory: tokenizer.json when present, otherwise
// vocab.json + merges.txt (+ added_tokens.json, special_tokens_map.json, tokenizer_config.json).
// The BOS and EOS tokens come from tokenizer_config.json (else special_tokens_map.json).
func Load(dir string) (*Tokenizer, error) {
	path := filepath.Join(dir, "tokenizer.json")
	raw, err := os.ReadFile(path)
	var sp *spec
	switch {
	case err == nil:
		sp, err = parseTokenizerJSON(path, raw)
		if err == nil {
			sp.special, err = readSpecialConfig(dir)
		}
	case errors.Is(err, fs.ErrNotExist):
		sp, err = parseVocabMerges(dir)
	default:
		err = fmt.Errorf("tokenizer: read %s: %w", path, err)
	}
	if err != nil {
		return nil, err
	}
	return build(sp)
}

// LoadJSON builds a tokenizer from the bytes of a HF tokenizer.json (the rules of Load; errors
// name the file as "tokenizer.json"). Without tokenizer_config.json, the BOS is the special token
// the post-processor's template puts first, if any.
func LoadJSON(raw []byte) (*Tokenizer, error) {
	sp, err := parseTokenizerJSON("tokenizer.json", raw)
	if err != nil {
		return nil, err
	}
	return build(sp)
}

// ---- tokenizer.json ----

// object is a JSON object with its "type" read out.
type object struct {
	typ    string
	fields map[string]json.RawMessage
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// parser reads the components of one tokenizer.json and names the file in its errors.
type parser struct{ path string }

func (p *parser) errf(format string, a ...any) error {
	return fmt.Errorf("tokenizer: %s: %s", p.path, fmt.Sprintf(format, a...))
}

// unsupported is the error for a component this package does not implement.
func (p *parser) unsupported(format string, a ...any) error {
	return fmt.Errorf("tokenizer: %s: unsupported %s", p.path, fmt.Sprintf(format, a...))
}

func (p *parser) object(raw json.RawMessage, where string) (object, error) {
	var o object
	if err := json.Unmarshal(raw, &o.fields); err != nil || o.fields == nil {
		return o, p.errf("%s is not a JSON object", where)
	}
	t, ok := o.fields["type"]
	if !ok {
		return o, p.errf(`%s has no "type"`, where)
	}
	if err := json.Unmarshal(t, &o.typ); err != nil {
		return o, p.errf(`%s "type" is not a string`, where)
	}
	return o, nil
}

// field decodes an optional field of o into v (left as is when absent or null).
func (p *parser) field(o object, where, name string, v any) error {
	raw, ok := o.fields[name]
	if !ok || isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return p.errf("%s %s.%s: %v", where, o.typ, name, err)
	}
	return nil
}

// required is field for a field HF requires.
func (p *parser) required(o object, where, name string, v any) error {
	if raw, ok := o.fields[name]; !ok || isNull(raw) {
		return p.errf("%s %s lacks %q", where, o.typ, name)
	}
	return p.field(o, where, name, v)
}

// char reads a field holding exactly one character (a Rust char).
func (p *parser) char(o object, where, name string) (rune, error) {
	var s string
	if err := p.required(o, where, name, &s); err != nil {
		return 0, err
	}
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || n != len(s) || r == utf8.RuneError {
		return 0, p.errf("%s %s.%s %q is not one character", where, o.typ, name, s)
	}
	return r, nil
}

// pattern reads a {"String": …} or {"Regex": …} pattern: one of literal and regex is set.
func (p *parser) pattern(o object, where string) (literal, regex string, err error) {
	var pat map[string]string
	if err := p.required(o, where, "pattern", &pat); err != nil {
		return "", "", err
	}
	s, isString := pat["String"]
	r, isRegex := pat["Regex"]
	switch {
	case len(pat) != 1 || !isString && !isRegex:
		return "", "", p.errf(`%s %s.pattern must be {"String": …} or {"Regex": …}`, where, o.typ)
	case isString && s == "":
		return "", "", p.unsupported("%s %s with an empty String pattern", where, o.typ)
	case isString:
		return s, "", nil
	}
	return "", r, nil
}

func literalFind(lit string) func(s string, fn func(int, int)) {
	return func(s string, fn func(int, int)) {
		for i := 0; ; {
			j := strings.Index(s[i:], lit)
			if j < 0 {
				return
			}
			fn(i+j, i+j+len(lit))
			i += j + len(lit)
		}
	}
}

func (p *parser) normalizer(raw json.RawMessage) (textNormalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	const where = "normalizer"
	o, err := p.object(raw, where)
	if err != nil {
		return nil, err
	}
	switch o.typ {
	case "NFC":
		return unicodeNorm{norm.NFC}, nil
	case "NFD":
		return unicodeNorm{norm.NFD}, nil
	case "NFKC":
		return unicodeNorm{norm.NFKC}, nil
	case "NFKD":
		return unicodeNorm{norm.NFKD}, nil
	case "Lowercase":
		return lowercase{}, nil
	case "Prepend":
		var s string
		if err := p.required(o, where, "prepend", &s); err != nil {
			return nil, err
		}
		return prepend{s}, nil
	case "Replace":
		r, err := p.replace(o, where)
		return r, err
	case "Sequence":
		seq, err := sequence(p, o, where, "normalizers", "normalizer", p.normalizer)
		if err != nil {
			return nil, err
		}
		return normSequence(seq), nil
	}
	return nil, p.unsupported("normalizer type %q (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Sequence)", o.typ)
}

func (p *parser) replace(o object, where string) (replace, error) {
	lit, regex, err := p.pattern(o, where)
	if err != nil {
		return replace{}, err
	}
	r := replace{literal: lit}
	if lit == "" {
		if r.re, err = compileRegex(regex); err != nil {
			return replace{}, p.unsupported("%s Replace pattern: %v", where, err)
		}
	}
	raw, ok := o.fields["content"]
	if !ok || json.Unmarshal(raw, &r.content) != nil {
		return replace{}, p.errf("%s Replace needs a string \"content\"", where)
	}
	return r, nil
}

// prependScheme reads Metaspace's prepend_scheme and its legacy add_prefix_space as HF does.
func (p *parser) prependScheme(o object, where string) (prependScheme, error) {
	scheme := prependAlways
	if raw, ok := o.fields["prepend_scheme"]; ok && !isNull(raw) {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, p.errf("%s Metaspace.prepend_scheme: %v", where, err)
		}
		switch s {
		case "always":
		case "first":
			scheme = prependFirst
		case "never":
			scheme = prependNever
		default:
			return 0, p.errf("%s Metaspace.prepend_scheme %q (want always, first or never)", where, s)
		}
	}
	var aps *bool
	if err := p.field(o, where, "add_prefix_space", &aps); err != nil {
		return 0, err
	}
	if aps != nil && !*aps {
		if scheme != prependNever {
			return 0, p.errf("%s Metaspace: add_prefix_space false does not match prepend_scheme (HF refuses this file)", where)
		}
	}
	return scheme, nil
}

func (p *parser) preTokenizer(raw json.RawMessage, out []preStep) ([]preStep, error) {
	if isNull(raw) {
		return out, nil
	}
	const where = "pre_tokenizer"
	o, err := p.object(raw, where)
	if err != nil {
		return nil, err
	}
	switch o.typ {
	case "ByteLevel":
		b := byteLevelStep{useRegex: true}
		if err := p.field(o, where, "add_prefix_space", &b.addPrefixSpace); err != nil {
			return nil, err
		}
		if err := p.field(o, where, "use_regex", &b.useRegex); err != nil {
			return nil, err
		}
		return append(out, b), nil
	case "Split":
		lit, regex, err := p.pattern(o, where)
		if err != nil {
			return nil, err
		}
		st := &splitStep{}
		switch sc := scannerFor(regex); {
		case lit != "":
			st.find = literalFind(lit)
		case sc != nil:
			st.find = sc
		default:
			re, err := compileRegex(regex)
			if err != nil {
				return nil, p.unsupported("%s Split pattern: %v", where, err)
			}
			st.find = re.findAll
		}
		var b string
		if err := p.required(o, where, "behavior", &b); err != nil {
			return nil, err
		}
		switch b {
		case "Isolated":
			st.behavior = isolated
		case "Removed":
			st.behavior = removed
		case "MergedWithPrevious":
			st.behavior = mergedWithPrevious
		case "MergedWithNext":
			st.behavior = mergedWithNext
		case "Contiguous":
			st.behavior = contiguous
		default:
			return nil, p.errf("%s Split.behavior %q", where, b)
		}
		if err := p.field(o, where, "invert", &st.invert); err != nil {
			return nil, err
		}
		return append(out, st), nil
	case "Metaspace":
		r, err := p.char(o, where, "replacement")
		if err != nil {
			return nil, err
		}
		scheme, err := p.prependScheme(o, where)
		if err != nil {
			return nil, err
		}
		m := metaspaceStep{rep: r, repStr: string(r), scheme: scheme, split: true}
		if err := p.field(o, where, "split", &m.split); err != nil {
			return nil, err
		}
		return append(out, m), nil
	case "Digits":
		var d digitsStep
		if err := p.field(o, where, "individual_digits", &d.individual); err != nil {
			return nil, err
		}
		return append(out, d), nil
	case "Sequence":
		var subs []json.RawMessage
		if err := p.required(o, where, "pretokenizers", &subs); err != nil {
			return nil, err
		}
		for _, s := range subs {
			if isNull(s) {
				return nil, p.errf("pre_tokenizer Sequence holds null")
			}
			if out, err = p.preTokenizer(s, out); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, p.unsupported("pre_tokenizer type %q (supported: ByteLevel, Split, Metaspace, Digits, Sequence)", o.typ)
}

func (p *parser) decoder(raw json.RawMessage) (decoder, error) {
	if isNull(raw) {
		return nil, nil
	}
	const where = "decoder"
	o, err := p.object(raw, where)
	if err != nil {
		return nil, err
	}
	switch o.typ {
	case "ByteLevel":
		_, dec, err := byteLevel()
		if err != nil {
			return nil, err
		}
		return byteLevelDecoder{dec}, nil
	case "Metaspace":
		r, err := p.char(o, where, "replacement")
		if err != nil {
			return nil, err
		}
		scheme, err := p.prependScheme(o, where)
		if err != nil {
			return nil, err
		}
		return metaspaceDecoder{rep: r, scheme: scheme}, nil
	case "Replace":
		r, err := p.replace(o, where)
		if err != nil {
			return nil, err
		}
		return replaceDecoder{r}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		var d stripDecoder
		var err error
		if d.content, err = p.char(o, where, "content"); err != nil {
			return nil, err
		}
		if err := p.required(o, where, "start", &d.start); err != nil {
			return nil, err
		}
		if err := p.required(o, where, "stop", &d.stop); err != nil {
			return nil, err
		}
		if d.start < 0 || d.stop < 0 {
			return nil, p.errf("decoder Strip start/stop must not be negative")
		}
		return d, nil
	case "Sequence":
		seq, err := sequence(p, o, where, "decoders", "decoder", p.decoder)
		if err != nil {
			return nil, err
		}
		return decoderSequence(seq), nil
	}
	return nil, p.unsupported("decoder type %q (supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)", o.typ)
}

// postProcessor reads the post_processor; specials resolves a special token's ids.
func (p *parser) postProcessor(raw json.RawMessage) (postProcessor, error) {
	if isNull(raw) {
		return nil, nil
	}
	const where = "post_processor"
	o, err := p.object(raw, where)
	if err != nil {
		return nil, err
	}
	switch o.typ {
	case "ByteLevel":
		return identityPost{}, nil
	case "TemplateProcessing":
		var specials map[string]struct {
			ID     string   `json:"id"`
			IDs    []int    `json:"ids"`
			Tokens []string `json:"tokens"`
		}
		if err := p.field(o, where, "special_tokens", &specials); err != nil {
			return nil, err
		}
		var single json.RawMessage
		if err := p.required(o, where, "single", &single); err != nil {
			return nil, err
		}
		// The template is a list of {"Sequence": {...}} / {"SpecialToken": {...}} pieces (HF
		// does not read the string form "<s> $A" from a file).
		var pieces []struct {
			Sequence *struct {
				ID string `json:"id"`
			} `json:"Sequence"`
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
		}
		if err := json.Unmarshal(single, &pieces); err != nil {
			return nil, p.errf("post_processor TemplateProcessing.single: %v", err)
		}
		var t templatePost
		for _, pj := range pieces {
			switch {
			case pj.Sequence != nil:
				if pj.Sequence.ID != "A" {
					return nil, p.unsupported("post_processor single template with sequence %q", pj.Sequence.ID)
				}
				t.pieces = append(t.pieces, templatePiece{seq: true})
			case pj.SpecialToken != nil:
				st, ok := specials[pj.SpecialToken.ID]
				if !ok {
					return nil, p.errf("post_processor template uses special token %q missing from special_tokens", pj.SpecialToken.ID)
				}
				if len(st.IDs) != len(st.Tokens) {
					return nil, p.errf("post_processor special token %q: ids and tokens differ in length", pj.SpecialToken.ID)
				}
				t.pieces = append(t.pieces, templatePiece{ids: st.IDs})
			default:
				return nil, p.errf("post_processor template piece is neither Sequence nor SpecialToken")
			}
		}
		return t, nil
	case "Sequence":
		seq, err := sequence(p, o, where, "processors", "post_processor", p.postProcessor)
		if err != nil {
			return nil, err
		}
		return postSequence(seq), nil
	}
	return nil, p.unsupported("post_processor type %q (supported: ByteLevel, TemplateProcessing, Sequence)", o.typ)
}

// sequence reads the list in field key of a Sequence component (what: normalizer, decoder, …),
// each element through one; a null element is refused.
func sequence[T comparable](p *parser, o object, where, key, what string, one func(json.RawMessage) (T, error)) ([]T, error) {
	var subs []json.RawMessage
	if err := p.required(o, where, key, &subs); err != nil {
		return nil, err
	}
	var zero T
	out := make([]T, 0, len(subs))
	for _, raw := range subs {
		x, err := one(raw)
		if err != nil {
			return nil, err
		}
		if x == zero {
			return nil, p.errf("%s Sequence holds null", what)
		}
		out = append(out, x)
	}
	return out, nil
}

// tokenizerFile is the top level of tokenizer.json, read in one pass: the components stay raw
// for the parser, the model's vocabulary is decoded directly.
type tokenizerFile struct {
	Version       json.RawMessage `json:"version"`
	Truncation    json.RawMessage `json:"truncation"`
	Padding       json.RawMessage `json:"padding"`
	AddedTokens   []AddedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         *struct {
		Type                    *string         `json:"type"`
		Dropout                 *float64        `json:"dropout"`
		UnkToken                *string         `json:"unk_token"`
		ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
		FuseUnk                 *bool           `json:"fuse_unk"`
		ByteFallback            *bool           `json:"byte_fallback"`
		IgnoreMerges            *bool           `json:"ignore_merges"`
		Vocab                   map[string]int  `json:"vocab"`
		Merges                  json.RawMessage `json:"merges"`
	} `json:"model"`
}

func parseTokenizerJSON(path string, raw []byte) (*spec, error) {
	p := &parser{path: path}
	var f tokenizerFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: parse %s: %w", path, err)
	}
	if len(f.Version) > 0 {
		var s string
		if json.Unmarshal(f.Version, &s) != nil || s != "1.0" {
			return nil, p.unsupported("version %s (HF tokenizers reads 1.0 only)", f.Version)
		}
	}
	for k, v := range map[string]json.RawMessage{"truncation": f.Truncation, "padding": f.Padding} {
		if !isNull(v) {
			return nil, p.unsupported("%s %s (encode would truncate or pad; only null)", k, v)
		}
	}
	sp := &spec{mergesFile: path, addedFile: path, added: f.AddedTokens}
	var err error
	if sp.norm, err = p.normalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if sp.steps, err = p.preTokenizer(f.PreTokenizer, nil); err != nil {
		return nil, err
	}
	metaspaces := 0
	for i, st := range sp.steps {
		switch st := st.(type) {
		case byteLevelStep:
			if i != len(sp.steps)-1 {
				return nil, p.unsupported("pre_tokenizer: ByteLevel followed by another pre-tokenizer (ByteLevel must come last)")
			}
			sp.byteLevel = true
		case metaspaceStep:
			metaspaces++
			if st.scheme == prependFirst && sp.norm != nil {
				return nil, p.unsupported(`pre_tokenizer: Metaspace with prepend_scheme "first" after a normalizer (which moves offsets)`)
			}
		}
	}
	if metaspaces > 1 {
		return nil, p.unsupported("pre_tokenizer: more than one Metaspace")
	}
	if sp.dec, err = p.decoder(f.Decoder); err != nil {
		return nil, err
	}
	if sp.post, err = p.postProcessor(f.PostProcessor); err != nil {
		return nil, err
	}
	if err := p.model(&f, sp); err != nil {
		return nil, err
	}
	return sp, nil
}

func (p *parser) model(f *tokenizerFile, sp *spec) error {
	m := f.Model
	switch {
	case m == nil:
		return p.errf("no model")
	case m.Type == nil:
		return p.errf(`model has no "type"`)
	case *m.Type != "BPE":
		return p.unsupported("model.type %q (want BPE)", *m.Type)
	case m.Dropout != nil && *m.Dropout != 0:
		return p.unsupported("model.dropout %v", *m.Dropout)
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "":
		return p.unsupported("model.continuing_subword_prefix %q", *m.ContinuingSubwordPrefix)
	case m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return p.unsupported("model.end_of_word_suffix %q", *m.EndOfWordSuffix)
	case m.Vocab == nil:
		return p.errf(`model BPE lacks "vocab"`)
	case isNull(m.Merges):
		return p.errf(`model BPE lacks "merges"`)
	}
	sp.unkToken, sp.vocab = m.UnkToken, m.Vocab
	sp.fuseUnk = m.FuseUnk != nil && *m.FuseUnk
	sp.byteFallback = m.ByteFallback != nil && *m.ByteFallback
	sp.ignoreMerges = m.IgnoreMerges != nil && *m.IgnoreMerges
	// Merges are either "a b" strings or [a, b] pairs (newer tokenizers versions).
	var asStrings []string
	if err := json.Unmarshal(m.Merges, &asStrings); err == nil {
		sp.merges = make([][2]string, 0, len(asStrings))
		for i, s := range asStrings {
			if strings.HasPrefix(s, "#version") {
				continue
			}
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return fmt.Errorf("tokenizer: %s: model.merges[%d] %q is not two tokens", p.path, i, s)
			}
			sp.merges = append(sp.merges, [2]string{a, b})
		}
	} else if err := json.Unmarshal(m.Merges, &sp.merges); err != nil {
		return fmt.Errorf("tokenizer: %s: model.merges: %w", p.path, err)
	}
	return nil
}

// ---- vocab.json + merges.txt ----

func parseVocabMerges(dir string) (*spec, error) {
	sp := &spec{addedFile: filepath.Join(dir, "added_tokens.json")}
	vocabPath := filepath.Join(dir, "vocab.json")
	raw, err := os.ReadFile(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s has no tokenizer.json and no vocab.json: %w", dir, err)
	}
	if err := json.Unmarshal(raw, &sp.vocab); err != nil {
		return nil, fmt.Errorf("tokenizer: parse %s: %w", vocabPath, err)
	}
	sp.mergesFile = filepath.Join(dir, "merges.txt")
	raw, err = os.ReadFile(sp.mergesFile)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: read %s: %w", sp.mergesFile, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimRight(sc.Text(), "\r")
		if (line == 1 && strings.HasPrefix(s, "#version")) || s == "" {
			continue
		}
		a, b, ok := strings.Cut(s, " ")
		if !ok || strings.Contains(b, " ") {
			return nil, fmt.Errorf("tokenizer: %s:%d: %q is not two tokens", sp.mergesFile, line, s)
		}
		sp.merges = append(sp.merges, [2]string{a, b})
		sp.mergeLine = append(sp.mergeLine, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer: read %s: %w", sp.mergesFile, err)
	}
	if sp.special, err = readSpecialConfig(dir); err != nil {
		return nil, err
	}
	addPrefixSpace := sp.special.addPrefixSpace != nil && *sp.special.addPrefixSpace
	sp.steps = []preStep{byteLevelStep{addPrefixSpace: addPrefixSpace, useRegex: true}}
	sp.byteLevel = true
	if _, dec, err := byteLevel(); err == nil {
		sp.dec = byteLevelDecoder{dec}
	}
	// Special tokens (bos/eos/unk/pad…) are special added tokens with their vocab ids.
	seen := map[string]bool{}
	for _, content := range sp.special.tokens {
		id, ok := sp.vocab[content]
		if content == "" || seen[content] || !ok {
			continue
		}
		seen[content] = true
		sp.added = append(sp.added, AddedToken{ID: id, Content: content, Special: true})
	}
	p := filepath.Join(dir, "added_tokens.json")
	raw, err = os.ReadFile(p)
	if err == nil {
		var m map[string]int
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("tokenizer: parse %s: %w", p, err)
		}
		var extra []AddedToken
		for content, id := range m {
			if !seen[content] {
				extra = append(extra, AddedToken{ID: id, Content: content, Normalized: true})
			}
		}
		// In id order, which must then continue the vocabulary without gaps (checkAddedIDs).
		sort.Slice(extra, func(i, j int) bool { return extra[i].ID < extra[j].ID })
		sp.added = append(sp.added, extra...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("tokenizer: read %s: %w", p, err)
	}
	return sp, nil
}

// ---- tokenizer_config.json / special_tokens_map.json ----

// namedToken is a special token named by a config file: its content, or none (absent or null).
type namedToken struct {
	set     bool   // the file has the key
	content string // "" when null
	file    string
}

// specialConfig is what tokenizer_config.json and special_tokens_map.json say about special
// tokens.
type specialConfig struct {
	bos, eos       namedToken
	conflict       string   // the two files name different BOS tokens
	tokens         []string // bos, eos, unk, pad, sep, cls, mask contents (fallback layout)
	addBOS, addEOS *bool
	addPrefixSpace *bool
}

// tokenContent reads a special token written as a string, as {"content": …} or as null.
func tokenContent(raw json.RawMessage) (string, bool) {
	if isNull(raw) {
		return "", true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Content != nil {
		return *obj.Content, true
	}
	return "", false
}

func readSpecialConfig(dir string) (specialConfig, error) {
	var c specialConfig
	seen := map[string]bool{}
	// tokenizer_config.json first: it is the file transformers reads the tokenizer's settings
	// from; special_tokens_map.json fills in what it does not name.
	for _, name := range []string{"tokenizer_config.json", "special_tokens_map.json"} {
		path := filepath.Join(dir, name)
		raw, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return c, fmt.Errorf("tokenizer: read %s: %w", path, err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return c, fmt.Errorf("tokenizer: parse %s: %w", path, err)
		}
		if name == "tokenizer_config.json" {
			for key, dst := range map[string]**bool{"add_bos_token": &c.addBOS, "add_eos_token": &c.addEOS, "add_prefix_space": &c.addPrefixSpace} {
				if v, ok := m[key]; ok && !isNull(v) {
					var b bool
					if err := json.Unmarshal(v, &b); err != nil {
						return c, fmt.Errorf("tokenizer: parse %s: %s: %w", path, key, err)
					}
					*dst = &b
				}
			}
		}
		for key, dst := range map[string]*namedToken{"bos_token": &c.bos, "eos_token": &c.eos} {
			v, ok := m[key]
			if !ok {
				continue
			}
			content, ok := tokenContent(v)
			if !ok {
				return c, fmt.Errorf("tokenizer: parse %s: %s is neither a string, {\"content\": …} nor null", path, key)
			}
			if !dst.set {
				*dst = namedToken{set: true, content: content, file: path}
			} else if key == "bos_token" && dst.content != content {
				c.conflict = fmt.Sprintf("%s names BOS %q but %s names %q", dst.file, dst.content, path, content)
			}
		}
		for _, key := range []string{"bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"} {
			if v, ok := m[key]; ok {
				if content, ok := tokenContent(v); ok && content != "" && !seen[content] {
					seen[content] = true
					c.tokens = append(c.tokens, content)
				}
			}
		}
	}
	return c, nil
}
