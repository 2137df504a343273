package data

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"
)

// CodePoints is Python's len(text): the number of Unicode code points.
func CodePoints(text string) int { return utf8.RuneCountInString(text) }

// Words is Python's len(text.split(" ")): the number of pieces between single U+0020 spaces,
// counting empty pieces (so "a  b" has 3 and "" has 1).
func Words(text string) int { return strings.Count(text, " ") + 1 }

// Filter keeps a document when Words(text) < MaxWords and CodePoints(text) < MaxChars.
// A zero bound is no bound.
type Filter struct {
	MaxWords int
	MaxChars int
}

// Keep reports whether text passes the filter.
func (f Filter) Keep(text string) bool {
	if f.MaxWords > 0 && Words(text) >= f.MaxWords {
		return false
	}
	if f.MaxChars > 0 && CodePoints(text) >= f.MaxChars {
		return false
	}
	return true
}

// Preset is a named document selection plus the evaluation settings that go with it.
//
// Apply reads the first MaxDocs documents of a file (all when 0), keeps those passing
// Filter, optionally reorders them by NumPy's default_rng(Seed).permutation(kept) (what
// datasets.Dataset.shuffle(seed=Seed) does), then returns the documents Skip … Skip+Take-1
// of that order (all after Skip when Take is 0). PrependBOS, Positions and Seed are for the
// evaluation (Seed also seeds the source positions).
type Preset struct {
	Name    string
	MaxDocs int
	Filter
	Shuffle    bool
	Seed       int64
	Skip, Take int
	PrependBOS bool
	// Positions is the evaluation's position mode (core/patchscope): "notebook" (the published
	// simplescope notebook's draws) or "paper" (the Patchscopes notebook's one position per
	// document).
	Positions string
}

var presets = map[string]Preset{
	// The published simplescope run (TransformerLens, GPT-J 6B).
	"seed": {Name: "seed", MaxDocs: 2000, Filter: Filter{MaxWords: 200, MaxChars: 1600},
		Seed: 42, PrependBOS: true, Positions: "notebook"},
	// The Patchscopes paper's next-token experiment (next_token_prediction.ipynb, validation split).
	"paper": {Name: "paper", MaxDocs: 200000, Filter: Filter{MaxWords: 250, MaxChars: 2000},
		Shuffle: true, Seed: 42, Skip: 10000, Take: 2000, PrependBOS: false, Positions: "paper"},
}

// PresetNames lists the known presets, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// PresetByName returns a known preset; the error lists the known names.
func PresetByName(name string) (Preset, error) {
	p, ok := presets[name]
	if !ok {
		return Preset{}, fmt.Errorf("unknown dataset preset %q (known: %s)", name, strings.Join(PresetNames(), ", "))
	}
	return p, nil
}

func (p Preset) validate() error {
	switch {
	case p.MaxDocs < 0:
		return fmt.Errorf("preset %s: MaxDocs %d is negative", p.Name, p.MaxDocs)
	case p.MaxWords < 0 || p.MaxChars < 0:
		return fmt.Errorf("preset %s: negative filter bound (MaxWords %d, MaxChars %d)", p.Name, p.MaxWords, p.MaxChars)
	case p.Skip < 0 || p.Take < 0:
		return fmt.Errorf("preset %s: negative Skip %d or Take %d", p.Name, p.Skip, p.Take)
	case p.Shuffle && p.Seed < 0:
		return fmt.Errorf("preset %s: shuffle seed %d is negative", p.Name, p.Seed)
	}
	return nil
}

// Apply selects the preset's documents from a corpus file (see Preset). Each Doc keeps its
// Index in the file. Selecting no document is an error wrapping ErrNoDocuments that gives the
// counts (for example the paper preset on a corpus with fewer than 10 001 filtered documents).
func (p Preset) Apply(path string) ([]Doc, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	r, err := Open(path)
	if err != nil {
		return nil, fmt.Errorf("preset %s: %w", p.Name, err)
	}
	defer r.Close()
	return p.apply(r, path)
}

// ApplyReader is Apply on an open Reader; name is used in errors.
func (p Preset) ApplyReader(r *Reader, name string) ([]Doc, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return p.apply(r, name)
}

func (p Preset) apply(r *Reader, name string) ([]Doc, error) {
	var kept []Doc
	read := 0
	for p.MaxDocs == 0 || read < p.MaxDocs {
		d, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("preset %s: %w", p.Name, err)
		}
		read++
		if p.Keep(d.Text) {
			kept = append(kept, d)
		}
	}
	if p.Shuffle {
		perm, err := NumpyPermutation(len(kept), p.Seed)
		if err != nil {
			return nil, fmt.Errorf("preset %s: %w", p.Name, err)
		}
		shuffled := make([]Doc, len(kept))
		for i, j := range perm {
			shuffled[i] = kept[j]
		}
		kept = shuffled
	}
	lo, hi := p.Skip, len(kept)
	if p.Take > 0 && lo+p.Take < hi {
		hi = lo + p.Take
	}
	if lo >= hi {
		return nil, fmt.Errorf("preset %s on %s: %w selected: read %d, %d passed the filter "+
			"(words < %d, chars < %d), skip %d leaves none", p.Name, name, ErrNoDocuments,
			read, len(kept), p.MaxWords, p.MaxChars, p.Skip)
	}
	// Copy so the unselected documents can be collected.
	return append([]Doc(nil), kept[lo:hi]...), nil
}

// IsNoDocuments reports whether err is (or wraps) ErrNoDocuments.
func IsNoDocuments(err error) bool { return errors.Is(err, ErrNoDocuments) }
