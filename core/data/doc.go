// Package data reads text corpora and selects the documents an experiment runs on.
//
// Formats (chosen by the file name, case-insensitively; see DetectFormat):
//   - *.jsonl, *.jsonl.zst: the Pile's format, one JSON object per line, {"text": "...", "meta": {...}};
//     "text" (exact key) must be a string; other keys are checked as JSON and ignored;
//   - *.txt, *.txt.zst: plain UTF-8 text, one document per line ("\n" or "\r\n" endings; the
//     line is the document as is, leading and trailing spaces included).
//
// In both, lines of only ASCII white space are not documents and do not count in document
// indices. Files are streamed (Open/Next, ReadFile): only the current line and the documents
// kept are in memory, and reading stops after the documents asked for. Every error names the
// file, and for a bad line its 1-based line number; a file with no document is an error
// wrapping ErrNoDocuments.
//
// Filters follow Python: CodePoints is len(text) in Unicode code points and Words is
// len(text.split(" ")), the pieces between single U+0020 spaces, empty pieces included.
//
// Presets (PresetByName: "seed", "paper") fix the document selection of docs/design.md §1. The
// paper's notebook (PAIR-code/interpretability, patchscopes/code/next_token_prediction.ipynb)
// filters the first 200 000 Pile documents with datasets' filter and calls
// Dataset.shuffle(seed=42), which is np.random.default_rng(42).permutation(n); numpyrng.go
// reimplements that (SeedSequence, PCG64, random_interval, Fisher–Yates) bit for bit.
//
// Each Doc carries Index, its 0-based position among the documents of the file, and Line, its
// 1-based line number, so a selection can always be traced back to the source file.
package data
