package data

import (
	"strings"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
)

func sampleCorpus(t *testing.T) string {
	t.Helper()
	return testutil.CorpusPath()
}

func mustPreset(t *testing.T, name string) Preset {
	t.Helper()
	p, err := PresetByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPresetsMatchPython applies presets (and variants with other offsets and seeds) to the
// repository's 5 053-document sample (testdata/corpus) and compares the selected documents with the Python
// reimplementation in testdata/preset_ref.py.
func TestPresetsMatchPython(t *testing.T) {
	seed := mustPreset(t, "seed")
	paper := mustPreset(t, "paper")
	with := func(p Preset, f func(*Preset)) Preset { f(&p); return p }
	cases := []struct {
		name   string
		preset Preset
	}{
		{"seed", seed},
		{"paper skip 100 take 50", with(paper, func(p *Preset) { p.Skip, p.Take = 100, 50 })},
		{"paper skip 3000 take 2000 (runs off the end)", with(paper, func(p *Preset) { p.Skip, p.Take = 3000, 2000 })},
		{"paper all shuffled", with(paper, func(p *Preset) { p.Skip, p.Take = 0, 0 })},
		{"paper seed 7 first 1000 docs", with(paper, func(p *Preset) { p.Seed, p.MaxDocs, p.Skip, p.Take = 7, 1000, 10, 300 })},
		{"seed shuffled", with(seed, func(p *Preset) { p.Shuffle, p.Skip, p.Take = true, 5, 500 })},
		{"whole file unfiltered", Preset{Name: "all"}},
	}
	path := sampleCorpus(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := pythonPreset(t, path, c.preset)
			got, err := c.preset.Apply(path)
			if err != nil {
				t.Fatalf("Apply: %v (Python read %d, kept %d, selected %d)", err, want.Read, want.Kept, len(want.Docs))
			}
			if len(want.Docs) == 0 {
				t.Fatalf("Python selected nothing; the case does not test anything")
			}
			compareDocs(t, got, want.Docs)
		})
	}
}

// TestPaperPresetOnSmallCorpus: the sample has fewer than 10 000 filtered documents, so the
// paper preset selects none (Python's slice is empty) and Apply says so with the counts.
func TestPaperPresetOnSmallCorpus(t *testing.T) {
	path := sampleCorpus(t)
	p := mustPreset(t, "paper")
	want := pythonPreset(t, path, p)
	if len(want.Docs) != 0 {
		t.Fatalf("Python selected %d documents; expected none from a %d-document corpus", len(want.Docs), want.Read)
	}
	_, err := p.Apply(path)
	if !IsNoDocuments(err) {
		t.Fatalf("Apply error = %v, want ErrNoDocuments", err)
	}
	for _, s := range []string{path, "paper", itoa(want.Read), itoa(want.Kept), "skip 10000"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestPresetByName(t *testing.T) {
	for _, name := range PresetNames() {
		p, err := PresetByName(name)
		if err != nil || p.Name != name {
			t.Errorf("PresetByName(%q) = %+v, %v", name, p, err)
		}
	}
	_, err := PresetByName("nope")
	if err == nil {
		t.Fatal("unknown preset accepted")
	}
	for _, s := range []string{`"nope"`, "paper", "seed"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %s", err, s)
		}
	}
}

func TestPresetInvalid(t *testing.T) {
	path := sampleCorpus(t)
	cases := []struct {
		name   string
		preset Preset
		want   string
	}{
		{"negative max docs", Preset{Name: "x", MaxDocs: -1}, "MaxDocs"},
		{"negative skip", Preset{Name: "x", Skip: -1}, "Skip"},
		{"negative filter", Preset{Name: "x", Filter: Filter{MaxChars: -3}}, "filter"},
		{"negative seed", Preset{Name: "x", Shuffle: true, Seed: -1}, "seed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.preset.Apply(path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want one mentioning %q", err, c.want)
			}
		})
	}
}
