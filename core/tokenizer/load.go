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
)

// hfFile is the part of a HF tokenizer.json that a byte-level BPE tokenizer uses.
type hfFile struct {
	AddedTokens  []AddedToken    `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer *struct {
		Type           string `json:"type"`
		AddPrefixSpace bool   `json:"add_prefix_space"`
		UseRegex       *bool  `json:"use_regex"`
	} `json:"pre_tokenizer"`
	Decoder *struct {
		Type string `json:"type"`
	} `json:"decoder"`
	Model struct {
		Type                    string          `json:"type"`
		Dropout                 *float64        `json:"dropout"`
		ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
		ByteFallback            bool            `json:"byte_fallback"`
		Vocab                   map[string]int  `json:"vocab"`
		Merges                  json.RawMessage `json:"merges"`
	} `json:"model"`
}

// spec is what Load gathers from either layout before building the Tokenizer.
type spec struct {
	vocab          map[string]int
	merges         [][2]string
	mergeLine      []int // source line of each merge (for errors), 0 when unknown
	mergesFile     string
	added          []AddedToken
	addedFile      string // where the added tokens come from (for errors)
	addPrefixSpace bool
	useRegex       bool
}

// Load reads the tokenizer of a model directory: tokenizer.json when present, otherwise
// vocab.json + merges.txt (+ added_tokens.json, special_tokens_map.json, tokenizer_config.json).
func Load(dir string) (*Tokenizer, error) {
	path := filepath.Join(dir, "tokenizer.json")
	raw, err := os.ReadFile(path)
	var sp *spec
	switch {
	case err == nil:
		sp, err = parseTokenizerJSON(path, raw)
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
// name the file as "tokenizer.json").
func LoadJSON(raw []byte) (*Tokenizer, error) {
	sp, err := parseTokenizerJSON("tokenizer.json", raw)
	if err != nil {
		return nil, err
	}
	return build(sp)
}

func parseTokenizerJSON(path string, raw []byte) (*spec, error) {
	var f hfFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: parse %s: %w", path, err)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("tokenizer: %s: unsupported %s", path, fmt.Sprintf(format, a...))
	}
	m := f.Model
	switch {
	case m.Type != "BPE":
		return nil, bad("model.type %q (want BPE)", m.Type)
	case m.Dropout != nil && *m.Dropout != 0:
		return nil, bad("model.dropout %v", *m.Dropout)
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "":
		return nil, bad("model.continuing_subword_prefix %q", *m.ContinuingSubwordPrefix)
	case m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return nil, bad("model.end_of_word_suffix %q", *m.EndOfWordSuffix)
	case m.ByteFallback:
		return nil, bad("model.byte_fallback true")
	case len(f.Normalizer) > 0 && string(f.Normalizer) != "null":
		return nil, bad("normalizer %s (only null)", f.Normalizer)
	case f.PreTokenizer == nil || f.PreTokenizer.Type != "ByteLevel":
		return nil, bad("pre_tokenizer (want ByteLevel)")
	case f.Decoder != nil && f.Decoder.Type != "ByteLevel":
		return nil, bad("decoder.type %q (want ByteLevel)", f.Decoder.Type)
	}
	sp := &spec{vocab: m.Vocab, mergesFile: path, added: f.AddedTokens, addedFile: path,
		addPrefixSpace: f.PreTokenizer.AddPrefixSpace, useRegex: true}
	if u := f.PreTokenizer.UseRegex; u != nil {
		sp.useRegex = *u
	}
	// Merges are either "a b" strings or [a, b] pairs (newer tokenizers versions).
	var asStrings []string
	if err := json.Unmarshal(m.Merges, &asStrings); err == nil {
		for i, s := range asStrings {
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("tokenizer: %s: model.merges[%d] %q is not two tokens", path, i, s)
			}
			sp.merges = append(sp.merges, [2]string{a, b})
		}
	} else if err := json.Unmarshal(m.Merges, &sp.merges); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: model.merges: %w", path, err)
	}
	return sp, nil
}

func parseVocabMerges(dir string) (*spec, error) {
	sp := &spec{useRegex: true, addedFile: filepath.Join(dir, "added_tokens.json")}
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
	// Special tokens (bos/eos/unk/pad…) are special added tokens with their vocab ids.
	seen := map[string]bool{}
	for _, name := range []string{"special_tokens_map.json", "tokenizer_config.json"} {
		p := filepath.Join(dir, name)
		raw, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("tokenizer: read %s: %w", p, err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("tokenizer: parse %s: %w", p, err)
		}
		if v, ok := m["add_prefix_space"]; ok && name == "tokenizer_config.json" {
			_ = json.Unmarshal(v, &sp.addPrefixSpace)
		}
		for _, key := range []string{"bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"} {
			v, ok := m[key]
			if !ok {
				continue
			}
			var content string
			if json.Unmarshal(v, &content) != nil {
				var obj struct {
					Content string `json:"content"`
				}
				if json.Unmarshal(v, &obj) != nil {
					continue
				}
				content = obj.Content
			}
			id, ok := sp.vocab[content]
			if content == "" || seen[content] || !ok {
				continue
			}
			seen[content] = true
			sp.added = append(sp.added, AddedToken{ID: id, Content: content, Special: true})
		}
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
