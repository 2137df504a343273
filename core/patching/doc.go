// Package patching holds the patching and generation primitives: read a hidden state
// (HiddenStates), write vectors into a target prompt's residual stream and read the next-token
// logits (Patch), or generate after the patch (Generate).
//
// A Row names a target (token ids), the block whose residual is replaced (Layer; Site says
// whether its output, resid_post, or its input, resid_pre) and the positions written. The work
// is planned once (plan.go) so that the three ideas of docs/design.md §2 apply:
//
//   - rows that share a target share the keys and values of the target's tokens before the first
//     patched position (they never see the patch): one prefix pass per distinct target, its
//     K/V broadcast to every row;
//   - a row that patches only the last position of its target needs no block below the patch
//     for that position (nothing after it attends to its lower layers): it starts at the
//     patched block with the vector itself, one position through the rest, like evaluate's
//     continuations;
//   - everything else runs the tail of its target (after the shared prefix) through every block
//     with the vectors written in by a hook, many rows per batch; generation keeps those K/V and
//     decodes all rows together, rows leaving the batch when they end.
package patching
