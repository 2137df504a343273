package patchscope

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
)

// Position modes (docs/design.md §1). len is a prompt's token count as the engine sees it (BOS
// included when the prompts carry it).
const (
	// PosRandom: randint(0, len-1) per (prompt, layer, method) from a generator keyed by the seed,
	// the method's name, the layer and the prompt's token ids: a position does not depend on the
	// order or the number of prompts, methods or layers, nor on batching (two identical prompts
	// get the same positions).
	PosRandom = "random"
	// PosNotebook: the published simplescope notebook's positions. CPython's random.seed(seed),
	// then random.randint(0, len-1) for every method, every layer of that method and every prompt
	// of that layer, in that order (methods and layers in request order).
	PosNotebook = "notebook"
	// PosPaper: the Patchscopes paper's positions. CPython's random.seed(seed), then one
	// random.randint(Start, len-2) per prompt in order, shared by every layer and method.
	// Prompts shorter than Start+2 tokens are skipped.
	PosPaper = "paper"
	PosLast  = "last"
	PosGiven = "given" // PerPrompt or PerPromptLayer
)

// PositionModes lists the modes a caller names (PosGiven comes with the positions themselves).
var PositionModes = []string{PosRandom, PosNotebook, PosPaper, PosLast}

// Positions chooses the source position of every (prompt, layer, method).
type Positions struct {
	Mode           string
	Start          int     // PosPaper: the first position drawn (1 when the prompts start with BOS)
	PerPrompt      []int   // [n_prompts]
	PerPromptLayer [][]int // [n_prompts][n_layers] (layers in Request.Layers order)
}

// partition splits the prompts into those evaluated and those skipped: a prompt of no tokens
// (any mode), and in PosPaper mode a prompt too short for randint(Start, len-2). Skipped
// prompts take no draw, so the others' notebook and paper positions are those of the same
// list without them.
func (r *Request) partition() (kept, empty, short []int) {
	for d, p := range r.Prompts {
		switch {
		case len(p) == 0:
			empty = append(empty, d)
		case r.Positions.Mode == PosPaper && len(p)-2 < r.Positions.Start:
			short = append(short, d)
		default:
			kept = append(kept, d)
		}
	}
	return kept, empty, short
}

// subset returns the request on prompts kept (indices into r.Prompts, ascending), with given
// positions taken along.
func (r *Request) subset(kept []int) Request {
	sub := *r
	if len(kept) == len(r.Prompts) {
		return sub
	}
	sub.Prompts = make([][]int, len(kept))
	for i, d := range kept {
		sub.Prompts[i] = r.Prompts[d]
	}
	if r.Positions.Mode == PosGiven {
		if r.Positions.PerPrompt != nil {
			sub.Positions.PerPrompt = make([]int, len(kept))
			for i, d := range kept {
				sub.Positions.PerPrompt[i] = r.Positions.PerPrompt[d]
			}
		}
		if r.Positions.PerPromptLayer != nil {
			sub.Positions.PerPromptLayer = make([][]int, len(kept))
			for i, d := range kept {
				sub.Positions.PerPromptLayer[i] = r.Positions.PerPromptLayer[d]
			}
		}
	}
	return sub
}

// planPositions draws the notebook and paper positions up front (they depend on the order of
// the draws) and hashes each prompt for the random mode.
func (r *Request) planPositions() {
	r.drawn, r.digests = nil, nil
	nl, nm := len(r.Layers), len(r.Methods)
	switch r.Positions.Mode {
	case PosNotebook:
		g := NewPyRandom(r.Seed)
		r.drawn = make([]int32, len(r.Prompts)*nl*nm)
		for mi := 0; mi < nm; mi++ {
			for li := 0; li < nl; li++ {
				for d, p := range r.Prompts {
					r.drawn[(d*nl+li)*nm+mi] = int32(g.RandInt(0, len(p)-1))
				}
			}
		}
	case PosPaper:
		g := NewPyRandom(r.Seed)
		r.drawn = make([]int32, len(r.Prompts))
		for d, p := range r.Prompts {
			r.drawn[d] = int32(g.RandInt(r.Positions.Start, len(p)-2))
		}
	case PosRandom:
		r.digests = make([][32]byte, len(r.Prompts))
		for d, p := range r.Prompts {
			r.digests[d] = TokensDigest(p)
		}
	}
}

// positionOf returns the source position for prompt d, layer index li, method index mi (after
// planPositions).
func (r *Request) positionOf(d, li, mi int, layer int) int {
	n := len(r.Prompts[d])
	switch r.Positions.Mode {
	case PosLast:
		return n - 1
	case PosGiven:
		if r.Positions.PerPromptLayer != nil {
			return r.Positions.PerPromptLayer[d][li]
		}
		return r.Positions.PerPrompt[d]
	case PosNotebook:
		return int(r.drawn[(d*len(r.Layers)+li)*len(r.Methods)+mi])
	case PosPaper:
		return int(r.drawn[d])
	}
	return keyedPosition(r.Seed, r.Methods[mi].Name, layer, r.digests[d], n)
}

// keyedPosition is PosRandom's draw in [0, n): a PCG generator seeded with the SHA-256 of (seed,
// method name, layer, the prompt's digest).
func keyedPosition(seed int64, method string, layer int, digest [32]byte, n int) int {
	buf := make([]byte, 0, 8+4+len(method)+8+32)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(seed))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(method)))
	buf = append(buf, method...)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(layer))
	buf = append(buf, digest[:]...)
	h := sha256.Sum256(buf)
	g := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(h[:8]), binary.LittleEndian.Uint64(h[8:16])))
	return g.IntN(n)
}

// TokensDigest is the SHA-256 of a token sequence: its length, then each id, as little-endian
// uint32.
func TokensDigest(ids []int) [32]byte {
	buf := make([]byte, 0, 4*(len(ids)+1))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(ids)))
	for _, id := range ids {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(id))
	}
	return sha256.Sum256(buf)
}

// CorpusDigest is the SHA-256 of a list of token sequences, each written as TokensDigest writes
// it (its length, then its ids, as little-endian uint32), one after the other.
func CorpusDigest(prompts [][]int) [32]byte {
	h := sha256.New()
	var buf []byte
	for _, p := range prompts {
		buf = binary.LittleEndian.AppendUint32(buf[:0], uint32(len(p)))
		for _, id := range p {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(id))
		}
		h.Write(buf)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// expand returns res (on the kept prompts) as a result on n prompts: row i of res becomes row
// kept[i]; the other rows are NaN, with ids and positions -1.
func (res *Result) expand(n int, kept []int) *Result {
	if len(kept) == n {
		return res
	}
	nl := len(res.Layers)
	out := *res
	out.NPrompts = n
	out.Methods = make([]MethodResult, len(res.Methods))
	for mi, mr := range res.Methods {
		nt := max(1, len(mr.TargetLayers))
		row, prow := nl*nt, nl // values per prompt: metrics, and positions / source ids
		o := MethodResult{Name: mr.Name, TargetLayers: mr.TargetLayers,
			Prec1: nanSlice(n * row), Surprisal: nanSlice(n * row), PaperSurprisal: nanSlice(n * row),
			PatchedTop1: minusOnes(n * row), Position: minusOnes(n * prow), SourceTop1: minusOnes(n * prow)}
		for i, d := range kept {
			copy(o.Prec1[d*row:(d+1)*row], mr.Prec1[i*row:(i+1)*row])
			copy(o.Surprisal[d*row:(d+1)*row], mr.Surprisal[i*row:(i+1)*row])
			copy(o.PaperSurprisal[d*row:(d+1)*row], mr.PaperSurprisal[i*row:(i+1)*row])
			copy(o.PatchedTop1[d*row:(d+1)*row], mr.PatchedTop1[i*row:(i+1)*row])
			copy(o.Position[d*prow:(d+1)*prow], mr.Position[i*prow:(i+1)*prow])
			copy(o.SourceTop1[d*prow:(d+1)*prow], mr.SourceTop1[i*prow:(i+1)*prow])
		}
		out.Methods[mi] = o
	}
	return &out
}

func minusOnes(n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = -1
	}
	return s
}
