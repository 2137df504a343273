package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeJSONLine returns the "text" field of one JSONL line. The line must be valid UTF-8 and
// hold exactly one JSON object whose key "text" (exact spelling after unescaping; the last one
// if repeated, as in Python's json) has a string value. Other keys ("meta") are checked as JSON
// and skipped without being decoded.
func DecodeJSONLine(line []byte) (string, error) {
	if !utf8.Valid(line) {
		return "", errors.New("invalid UTF-8")
	}
	if !json.Valid(line) {
		var v json.RawMessage
		err := json.Unmarshal(line, &v) // only to get the syntax error's message
		if err == nil {
			err = errors.New("invalid")
		}
		return "", fmt.Errorf("not valid JSON: %w", err)
	}
	// From here the line is one valid JSON value, so the scanning below cannot run past it.
	i := skipSpace(line, 0)
	if line[i] != '{' {
		return "", fmt.Errorf("not a JSON object (found %s)", kindOf(line[i]))
	}
	i++
	var text []byte
	for {
		i = skipSpace(line, i)
		if line[i] == '}' {
			break
		}
		keyEnd := skipString(line, i)
		key := line[i:keyEnd]
		i = skipSpace(line, keyEnd) + 1 // past ':'
		i = skipSpace(line, i)
		valEnd := skipValue(line, i)
		if isTextKey(key) {
			text = line[i:valEnd]
		}
		i = skipSpace(line, valEnd)
		if line[i] == ',' {
			i++
		}
	}
	if text == nil {
		return "", errors.New(`JSON object has no "text" field`)
	}
	if text[0] != '"' {
		return "", fmt.Errorf(`"text" is not a string (found %s)`, abbreviate(text))
	}
	return unquote(text), nil
}

// unquote decodes a JSON string literal already checked by json.Valid, as encoding/json does:
// a \u escape of a lone surrogate becomes U+FFFD.
func unquote(q []byte) string {
	q = q[1 : len(q)-1]
	first := bytes.IndexByte(q, '\\')
	if first < 0 {
		return string(q)
	}
	out := make([]byte, first, len(q))
	copy(out, q[:first])
	for i := first; i < len(q); {
		c := q[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		e := q[i+1]
		i += 2
		switch e {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := rune(hex4(q[i:]))
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(q) && q[i] == '\\' && q[i+1] == 'u' {
					r2 = rune(hex4(q[i+2:]))
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default: // '"', '\\', '/'
			out = append(out, e)
		}
	}
	return string(out)
}

// hex4 reads four hexadecimal digits (validated by json.Valid).
func hex4(b []byte) uint16 {
	var v uint16
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		v = v<<4 | uint16(c)
	}
	return v
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the JSON string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// skipValue returns the index just past the JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
	default: // number, true, false, null
		for i < len(b) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(b[i])) {
			i++
		}
		return i
	}
}

// isTextKey reports whether the quoted key is "text", escapes resolved.
func isTextKey(key []byte) bool {
	if bytes.IndexByte(key, '\\') < 0 {
		return string(key) == `"text"`
	}
	var s string
	return json.Unmarshal(key, &s) == nil && s == "text"
}

func kindOf(c byte) string {
	switch c {
	case '[':
		return "array"
	case '"':
		return "string"
	case 'n':
		return "null"
	case 't', 'f':
		return "boolean"
	}
	return "number"
}

func abbreviate(b []byte) string {
	const n = 40
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
