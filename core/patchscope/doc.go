// Package patchscope is the engine: logit lens, the token-identity Patchscope, simplescope and
// custom target prompts, evaluated over many prompts, layers and methods at once.
//
// The naive loop re-runs both prompts for every (prompt, layer, method). Here instead:
//   - one batched source forward per group of prompts (bucketed by length) keeps only the
//     residual rows the methods sample, plus the final-layer rows needed for the metrics;
//   - each method's target prefix (the tokens before its placeholder) is run once and its K/V
//     kept for every block;
//   - a patched run is one position through blocks t+1 … L-1 attending to that cached prefix,
//     and thousands of them batch together, grouped by (method, start block);
//   - prompts stream through fixed-size chunks, so memory does not grow with the number of
//     prompts; batch sizes halve and retry on out-of-memory; a context cancels between blocks.
package patchscope
