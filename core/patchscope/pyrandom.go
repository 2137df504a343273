package patchscope

// PyRandom is CPython's random.Random: the MT19937 generator of Modules/_randommodule.c, seeded
// as random.seed(n) seeds it for an integer n, with getrandbits and randint computed as
// Lib/random.py computes them. The notebook and paper position modes draw from it so that a
// run reproduces the positions a Python loop seeded with random.seed(seed) drew.
type PyRandom struct {
	mt    [mtN]uint32
	index int
}

const (
	mtN       = 624
	mtM       = 397
	mtMatrixA = 0x9908b0df
	mtUpper   = 0x80000000
	mtLower   = 0x7fffffff
)

// NewPyRandom returns the generator random.seed(seed) makes. CPython seeds with the absolute
// value of an integer, split into 32-bit words from the least significant (at least one word,
// so 0 is the key [0]) and fed to init_by_array.
func NewPyRandom(seed int64) *PyRandom {
	u := uint64(seed)
	if seed < 0 {
		u = -u // |seed|; for math.MinInt64 this is 2^63, as in Python
	}
	key := []uint32{uint32(u)}
	if hi := uint32(u >> 32); hi != 0 {
		key = append(key, hi)
	}
	g := &PyRandom{}
	g.initByArray(key)
	return g
}

func (g *PyRandom) initGenrand(s uint32) {
	g.mt[0] = s
	for i := 1; i < mtN; i++ {
		g.mt[i] = 1812433253*(g.mt[i-1]^(g.mt[i-1]>>30)) + uint32(i)
	}
	g.index = mtN
}

func (g *PyRandom) initByArray(key []uint32) {
	g.initGenrand(19650218)
	mt := &g.mt
	i, j := 1, 0
	for k := max(mtN, len(key)); k > 0; k-- {
		mt[i] = (mt[i] ^ ((mt[i-1] ^ (mt[i-1] >> 30)) * 1664525)) + key[j] + uint32(j)
		i++
		j++
		if i >= mtN {
			mt[0] = mt[mtN-1]
			i = 1
		}
		if j >= len(key) {
			j = 0
		}
	}
	for k := mtN - 1; k > 0; k-- {
		mt[i] = (mt[i] ^ ((mt[i-1] ^ (mt[i-1] >> 30)) * 1566083941)) - uint32(i)
		i++
		if i >= mtN {
			mt[0] = mt[mtN-1]
			i = 1
		}
	}
	mt[0] = 0x80000000 // MSB is 1, assuring a non-zero initial array
}

// Uint32 is genrand_uint32: the next tempered 32-bit output.
func (g *PyRandom) Uint32() uint32 {
	mt := &g.mt
	if g.index >= mtN {
		mag := func(y uint32) uint32 { return (y & 1) * mtMatrixA }
		var kk int
		for kk = 0; kk < mtN-mtM; kk++ {
			y := (mt[kk] & mtUpper) | (mt[kk+1] & mtLower)
			mt[kk] = mt[kk+mtM] ^ (y >> 1) ^ mag(y)
		}
		for ; kk < mtN-1; kk++ {
			y := (mt[kk] & mtUpper) | (mt[kk+1] & mtLower)
			mt[kk] = mt[kk+mtM-mtN] ^ (y >> 1) ^ mag(y)
		}
		y := (mt[mtN-1] & mtUpper) | (mt[0] & mtLower)
		mt[mtN-1] = mt[mtM-1] ^ (y >> 1) ^ mag(y)
		g.index = 0
	}
	y := mt[g.index]
	g.index++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// GetRandBits is random.getrandbits(k) for 0 ≤ k ≤ 64: one 32-bit output for k ≤ 32, keeping its
// k most significant bits; for larger k the outputs fill the result from the least significant
// word up, the last one shifted right to the bits still wanted (as CPython builds its long).
func (g *PyRandom) GetRandBits(k int) uint64 {
	switch {
	case k <= 0:
		return 0 // getrandbits(0) is 0 and draws nothing
	case k <= 32:
		return uint64(g.Uint32() >> (32 - k))
	case k > 64:
		panic("PyRandom.GetRandBits: k > 64")
	}
	lo := uint64(g.Uint32())
	hi := uint64(g.Uint32() >> (64 - k))
	return hi<<32 | lo
}

// RandBelow is Random._randbelow_with_getrandbits(n) for n > 0: getrandbits(n.bit_length())
// until the value is below n. n = 1 still draws (k = 1, rejecting 1), as CPython does.
func (g *PyRandom) RandBelow(n uint64) uint64 {
	if n == 0 {
		panic("PyRandom.RandBelow: n = 0")
	}
	k := 64
	for k > 0 && n>>(k-1) == 0 {
		k--
	}
	r := g.GetRandBits(k)
	for r >= n {
		r = g.GetRandBits(k)
	}
	return r
}

// RandInt is random.randint(a, b): a + randbelow(b - a + 1), for a ≤ b.
func (g *PyRandom) RandInt(a, b int) int {
	if b < a {
		panic("PyRandom.RandInt: empty range")
	}
	return a + int(g.RandBelow(uint64(b-a)+1))
}
