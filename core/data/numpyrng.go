package data

import (
	"fmt"
	"math/bits"
)

// This file reimplements, bit for bit, the part of NumPy's random module that
// `datasets.Dataset.shuffle(seed=s)` uses, which is how the Patchscopes paper's notebook
// (next_token_prediction.ipynb) shuffles the filtered Pile:
//
//	generator = np.random.default_rng(seed)        # PCG64 seeded through SeedSequence(seed)
//	permutation = generator.permutation(len(ds))   # arange(n), then Fisher–Yates from the end
//
// The tests compare Permutation against the installed NumPy for several sizes and seeds.

// SeedSequence constants (numpy/random/bit_generator.pyx).
const (
	ssPoolSize = 4
	ssInitA    = 0x43b0d7e5
	ssMultA    = 0x931e8875
	ssInitB    = 0x8b51f9dd
	ssMultB    = 0x58f38ded
	ssMixL     = 0xca01f9dd
	ssMixR     = 0x4973f715
	ssXShift   = 16
)

// seedSequenceState returns SeedSequence(entropy).generate_state(nWords64, np.uint64) for a
// non-negative integer entropy without spawn key.
func seedSequenceState(entropy uint64, nWords64 int) []uint64 {
	// _int_to_uint32_array: little-endian 32-bit words, at least one.
	ent := []uint32{uint32(entropy)}
	if hi := uint32(entropy >> 32); hi != 0 {
		ent = append(ent, hi)
	}
	hashConst := uint32(ssInitA)
	hashmix := func(v uint32) uint32 {
		v ^= hashConst
		hashConst *= ssMultA
		v *= hashConst
		v ^= v >> ssXShift
		return v
	}
	mix := func(x, y uint32) uint32 {
		r := ssMixL*x - ssMixR*y
		r ^= r >> ssXShift
		return r
	}
	var pool [ssPoolSize]uint32
	for i := range pool {
		if i < len(ent) {
			pool[i] = hashmix(ent[i])
		} else {
			pool[i] = hashmix(0)
		}
	}
	for src := range pool {
		for dst := range pool {
			if src != dst {
				pool[dst] = mix(pool[dst], hashmix(pool[src]))
			}
		}
	}
	for src := ssPoolSize; src < len(ent); src++ {
		for dst := range pool {
			pool[dst] = mix(pool[dst], hashmix(ent[src]))
		}
	}
	// generate_state: cycle through the pool with the second hash.
	words := make([]uint32, 2*nWords64)
	hc := uint32(ssInitB)
	for i := range words {
		v := pool[i%ssPoolSize]
		v ^= hc
		hc *= ssMultB
		v *= hc
		v ^= v >> ssXShift
		words[i] = v
	}
	out := make([]uint64, nWords64)
	for i := range out {
		out[i] = uint64(words[2*i]) | uint64(words[2*i+1])<<32
	}
	return out
}

// uint128 is a 128-bit unsigned integer (hi, lo).
type uint128 struct{ hi, lo uint64 }

func (a uint128) mul(b uint128) uint128 {
	hi, lo := bits.Mul64(a.lo, b.lo)
	hi += a.hi*b.lo + a.lo*b.hi
	return uint128{hi, lo}
}

func (a uint128) add(b uint128) uint128 {
	lo, carry := bits.Add64(a.lo, b.lo, 0)
	hi, _ := bits.Add64(a.hi, b.hi, carry)
	return uint128{hi, lo}
}

// pcgMultiplier is PCG_DEFAULT_MULTIPLIER_128.
var pcgMultiplier = uint128{2549297995355413924, 4865540595714422341}

// PCG64 is NumPy's default bit generator (PCG XSL-RR 128/64) including its 32-bit buffering.
type PCG64 struct {
	state, inc uint128
	hasUint32  bool
	uinteger   uint32
}

// NewDefaultRNG returns the bit generator of np.random.default_rng(seed). Seeds must be
// non-negative (NumPy rejects negative ones too).
func NewDefaultRNG(seed int64) (*PCG64, error) {
	if seed < 0 {
		return nil, fmt.Errorf("numpy seed %d: must be non-negative", seed)
	}
	v := seedSequenceState(uint64(seed), 4)
	initState := uint128{v[0], v[1]}
	initSeq := uint128{v[2], v[3]}
	g := &PCG64{}
	g.inc = uint128{initSeq.hi<<1 | initSeq.lo>>63, initSeq.lo<<1 | 1}
	g.step()
	g.state = g.state.add(initState)
	g.step()
	return g, nil
}

func (g *PCG64) step() { g.state = g.state.mul(pcgMultiplier).add(g.inc) }

// Uint64 returns the next 64-bit output.
func (g *PCG64) Uint64() uint64 {
	g.step()
	return bits.RotateLeft64(g.state.hi^g.state.lo, -int(g.state.hi>>58))
}

// Uint32 returns the next 32-bit output: the low half of a 64-bit draw, the high half being
// kept for the next call (pcg64_next32).
func (g *PCG64) Uint32() uint32 {
	if g.hasUint32 {
		g.hasUint32 = false
		return g.uinteger
	}
	next := g.Uint64()
	g.hasUint32 = true
	g.uinteger = uint32(next >> 32)
	return uint32(next)
}

// Interval returns a uniform integer in [0, max] by masked rejection (random_interval).
func (g *PCG64) Interval(max uint64) uint64 {
	if max == 0 {
		return 0
	}
	mask := max
	mask |= mask >> 1
	mask |= mask >> 2
	mask |= mask >> 4
	mask |= mask >> 8
	mask |= mask >> 16
	mask |= mask >> 32
	if max <= 0xffffffff {
		for {
			if v := uint64(g.Uint32()) & mask; v <= max {
				return v
			}
		}
	}
	for {
		if v := g.Uint64() & mask; v <= max {
			return v
		}
	}
}

// Permutation returns Generator.permutation(n): arange(n) shuffled in place by Fisher–Yates
// running from the last element down to index 1.
func (g *PCG64) Permutation(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i >= 1; i-- {
		j := g.Interval(uint64(i))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// NumpyPermutation is np.random.default_rng(seed).permutation(n), the permutation that
// datasets.Dataset.shuffle(seed=seed) applies to a dataset of n rows.
func NumpyPermutation(n int, seed int64) ([]int, error) {
	g, err := NewDefaultRNG(seed)
	if err != nil {
		return nil, err
	}
	return g.Permutation(n), nil
}
