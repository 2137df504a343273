package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// decoder is one of tokenizer.json's decoders: decodeChain maps token strings to token strings as
// HF's Decoder::decode_chain does (the final text is their concatenation). In raw mode the steps
// that produce bytes (ByteLevel, ByteFallback) keep invalid UTF-8 as it is instead of replacing
// it with U+FFFD. middle is for the display of one token (TokenString): the token is read as if
// inside a text, so that Metaspace does not drop its leading ▁ and Strip does not strip.
type decoder interface {
	decodeChain(toks []string, raw, middle bool) []string
}

// byteLevelDecoder maps each token's characters through the byte-level alphabet; a token with a
// character outside the alphabet contributes its own UTF-8 bytes (as HF does).
type byteLevelDecoder struct{ dec map[rune]byte }

// tokenBytes is the bytes one token stands for under the byte-level decoder.
func (d byteLevelDecoder) tokenBytes(buf []byte, tok string) []byte {
	start := len(buf)
	for _, r := range tok {
		b, ok := d.dec[r]
		if !ok {
			return append(buf[:start], tok...)
		}
		buf = append(buf, b)
	}
	return buf
}

func (d byteLevelDecoder) decodeChain(toks []string, raw, _ bool) []string {
	var buf []byte
	for _, t := range toks {
		buf = d.tokenBytes(buf, t)
	}
	if raw {
		return []string{string(buf)}
	}
	return []string{lossyUTF8(string(buf))}
}

// metaspaceDecoder turns the replacement character back into spaces; in the first token it is
// dropped instead, unless the prepend scheme is "never".
type metaspaceDecoder struct {
	rep    rune
	scheme prependScheme
}

func (d metaspaceDecoder) decodeChain(toks []string, _, middle bool) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		drop := i == 0 && !middle && d.scheme != prependNever
		var b strings.Builder
		for j := 0; j < len(t); {
			r, n := utf8.DecodeRuneInString(t[j:])
			if r == d.rep && (r != utf8.RuneError || n > 1) {
				if !drop {
					b.WriteByte(' ')
				}
			} else {
				b.WriteString(t[j : j+n])
			}
			j += n
		}
		out[i] = b.String()
	}
	return out
}

// replaceDecoder replaces the matches of a pattern in each token.
type replaceDecoder struct{ r replace }

func (d replaceDecoder) decodeChain(toks []string, _, _ bool) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = d.r.apply(t)
	}
	return out
}

// byteFallbackDecoder turns runs of <0xNN> tokens into the bytes they stand for; a run that is
// not valid UTF-8 becomes one U+FFFD per byte (HF), or stays raw in raw mode.
type byteFallbackDecoder struct{}

// fallbackByte parses a <0xNN> token as HF does (u8::from_str_radix on the two characters after
// "<0x", which also accepts a leading '+').
func fallbackByte(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	h := t[3:5]
	if h[0] == '+' {
		h = h[1:]
	}
	v := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= '0' && c <= '9':
			v = v*16 + int(c-'0')
		case c >= 'a' && c <= 'f':
			v = v*16 + int(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v*16 + int(c-'A'+10)
		default:
			return 0, false
		}
	}
	if len(h) == 0 {
		return 0, false
	}
	return byte(v), true
}

func (byteFallbackDecoder) decodeChain(toks []string, raw, _ bool) []string {
	out := make([]string, 0, len(toks))
	var pend []byte
	flush := func() {
		if len(pend) == 0 {
			return
		}
		switch {
		case raw || utf8.Valid(pend):
			out = append(out, string(pend))
		default:
			for range pend {
				out = append(out, "\uFFFD")
			}
		}
		pend = pend[:0]
	}
	for _, t := range toks {
		if b, ok := fallbackByte(t); ok {
			pend = append(pend, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// fuseDecoder joins all tokens into one.
type fuseDecoder struct{}

func (fuseDecoder) decodeChain(toks []string, _, _ bool) []string {
	return []string{strings.Join(toks, "")}
}

// stripDecoder removes up to start leading and stop trailing occurrences of content from each
// token.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (d stripDecoder) decodeChain(toks []string, _, middle bool) []string {
	if middle {
		return toks
	}
	out := make([]string, len(toks))
	c := string(d.content)
	for i, t := range toks {
		for k := 0; k < d.start && strings.HasPrefix(t, c); k++ {
			t = t[len(c):]
		}
		for k := 0; k < d.stop && strings.HasSuffix(t, c); k++ {
			t = t[:len(t)-len(c)]
		}
		out[i] = t
	}
	return out
}

type decoderSequence []decoder

func (q decoderSequence) decodeChain(toks []string, raw, middle bool) []string {
	for _, d := range q {
		toks = d.decodeChain(toks, raw, middle)
	}
	return toks
}

// joinDecoder is what HF does without a decoder: the tokens joined with spaces.
type joinDecoder struct{}

func (joinDecoder) decodeChain(toks []string, _, _ bool) []string {
	return []string{strings.Join(toks, " ")}
}
