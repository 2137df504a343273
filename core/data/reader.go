package data

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// Doc is one document of a corpus file.
type Doc struct {
	Index int    // 0-based position among the file's documents (blank lines are not documents)
	Line  int    // 1-based line number in the (decompressed) file
	Text  string // the document text
}

// Format is how a file's lines become documents.
type Format int

const (
	// JSONL is one JSON object per line with a string field "text" (the Pile's format).
	JSONL Format = iota
	// Text is plain UTF-8 text, one document per line.
	Text
)

func (f Format) String() string {
	switch f {
	case JSONL:
		return "jsonl"
	case Text:
		return "text"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ErrNoDocuments reports a file, or a selection, without any document.
var ErrNoDocuments = errors.New("no documents")

// knownSuffixes are the file name endings Open accepts, longest first.
var knownSuffixes = []struct {
	suffix string
	format Format
	zst    bool
}{
	{".jsonl.zst", JSONL, true},
	{".txt.zst", Text, true},
	{".jsonl", JSONL, false},
	{".txt", Text, false},
}

// DetectFormat tells the format and compression of a file from its name (case-insensitive):
// .jsonl, .jsonl.zst, .txt, .txt.zst.
func DetectFormat(path string) (format Format, zst bool, err error) {
	lower := strings.ToLower(path)
	for _, k := range knownSuffixes {
		if strings.HasSuffix(lower, k.suffix) {
			return k.format, k.zst, nil
		}
	}
	names := make([]string, len(knownSuffixes))
	for i, k := range knownSuffixes {
		names[i] = k.suffix
	}
	return 0, false, fmt.Errorf("%s: unknown corpus format: the name must end in one of %s",
		path, strings.Join(names, ", "))
}

// Reader streams the documents of one file.
type Reader struct {
	name   string
	format Format
	file   *os.File
	zr     *zstd.Decoder
	br     *bufio.Reader
	buf    []byte // holds a line longer than the bufio buffer
	line   int    // lines consumed so far
	index  int    // documents returned so far
	err    error
}

// Open opens a corpus file for streaming; the format comes from DetectFormat.
func Open(path string) (*Reader, error) {
	format, zst, err := DetectFormat(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open corpus: %w", err)
	}
	r, err := newReader(f, path, format, zst)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file = f
	return r, nil
}

// NewReader streams documents from src, which is named name in errors. With zst the stream is
// Zstandard-compressed. The caller closes src; Close releases the decompressor.
func NewReader(src io.Reader, name string, format Format, zst bool) (*Reader, error) {
	return newReader(src, name, format, zst)
}

func newReader(src io.Reader, name string, format Format, zst bool) (*Reader, error) {
	r := &Reader{name: name, format: format}
	if zst {
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("%s: zstd: %w", name, err)
		}
		r.zr = zr
		src = zr
	}
	r.br = bufio.NewReaderSize(src, 1<<16)
	return r, nil
}

// Close releases the file and the decompressor.
func (r *Reader) Close() error {
	if r.zr != nil {
		r.zr.Close()
		r.zr = nil
	}
	if r.file != nil {
		err := r.file.Close()
		r.file = nil
		return err
	}
	return nil
}

// Next returns the next document, io.EOF after the last one, or an error naming the file and
// line. A file without any document gives an error wrapping ErrNoDocuments instead of io.EOF.
// After an error every call returns the same error.
func (r *Reader) Next() (Doc, error) {
	if r.err != nil {
		return Doc{}, r.err
	}
	d, err := r.next()
	if err != nil {
		r.err = err
	}
	return d, err
}

func (r *Reader) next() (Doc, error) {
	for {
		line, err := r.readLine()
		if err != nil && err != io.EOF {
			if r.zr != nil {
				return Doc{}, fmt.Errorf("%s: line %d: decompress (truncated or corrupt .zst?): %w", r.name, r.line+1, err)
			}
			return Doc{}, fmt.Errorf("%s: line %d: read: %w", r.name, r.line+1, err)
		}
		if len(line) == 0 && err == io.EOF {
			if r.index == 0 {
				return Doc{}, fmt.Errorf("%s: %w (empty file)", r.name, ErrNoDocuments)
			}
			return Doc{}, io.EOF
		}
		r.line++
		line = trimEOL(line)
		if isBlank(line) {
			continue
		}
		var text string
		var derr error
		switch r.format {
		case JSONL:
			text, derr = DecodeJSONLine(line)
		default:
			if !utf8.Valid(line) {
				derr = errors.New("invalid UTF-8")
			}
			text = string(line)
		}
		if derr != nil {
			return Doc{}, fmt.Errorf("%s: line %d: %w", r.name, r.line, derr)
		}
		d := Doc{Index: r.index, Line: r.line, Text: text}
		r.index++
		return d, nil
	}
}

// readLine returns the next line with its "\n"; the slice is valid until the next call.
func (r *Reader) readLine() ([]byte, error) {
	r.buf = r.buf[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			r.buf = append(r.buf, chunk...)
			continue
		}
		if len(r.buf) == 0 {
			return chunk, err
		}
		r.buf = append(r.buf, chunk...)
		return r.buf, err
	}
}

// trimEOL drops one trailing "\n" and then one "\r".
func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	return bytes.TrimSuffix(b, []byte{'\r'})
}

// isBlank reports a line of only ASCII white space (space, \t, \r, \v, \f), which is not a
// document.
func isBlank(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\v', '\f':
		default:
			return false
		}
	}
	return true
}

// ReadFile returns the first max documents of a file (all when max <= 0).
func ReadFile(path string, max int) ([]Doc, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var docs []Doc
	for max <= 0 || len(docs) < max {
		d, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, nil
}
