// Package data reads text corpora and selects the documents an experiment runs on.
//
// Formats (chosen by the file name, case-insensitively; see Open):
//   - *.jsonl, *.jsonl.zst: the Pile's format, one JSON object per line, {"text": "...", "meta": {...}};
//     "text" must be a string, other keys are ignored;
//   - *.txt, *.txt.zst: plain UTF-8 text, one document per line ("\n" or "\r\n" endings).
//
// In both, lines that are empty or only white space are not documents and do not count in
// document indices. Files are streamed: only the current line and the documents kept are in
// memory, so a 200 000-document slice of the Pile is fine. Every error names the file, and
// for a bad line its 1-based line number.
//
// Filters follow Python: len(text) counts Unicode code points and len(text.split(" ")) is the
// number of single-space-separated pieces (consecutive spaces give empty pieces, which count).
// Presets ("seed", "paper") fix the document selection of DESIGN.md §2; "paper" reproduces
// datasets.Dataset.shuffle(seed=42) from the Patchscopes notebook, i.e. NumPy's
// default_rng(42).permutation(n) (PCG64 + SeedSequence, reimplemented in numpyrng.go).
//
// Each Doc carries Index, its 0-based position among the documents of the file, and Line, its
// 1-based line number.
package data
