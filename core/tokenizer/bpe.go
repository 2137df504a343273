package tokenizer

import "sync"

// pair is two adjacent token ids.
type pair struct{ a, b int32 }

// merge is the result of merging a pair: its rank (position in the merges list) and new id.
type merge struct{ rank, id int32 }

// bpe is HF's BPE model. In byte-level mode (the pre-tokenizer ends with ByteLevel) it receives
// pre-tokens as raw bytes and starts from the vocab id of each byte's byte-level character; in
// character mode it starts from the vocab id of each character of the pre-token, with byte
// fallback (<0xNN> tokens) or the unknown token for characters outside the vocab. Both then merge
// by rank (lowest first, leftmost on ties), as HF's Word::merge_all does.
type bpe struct {
	byteLevel bool
	allBytes  bool           // byte-level mode: every byte's character is in the vocab
	byteID    [256]int32     // byte-level mode: vocab id of each byte's character, -1 when missing
	byteChar  *[256]string   // byte-level mode: each byte's character (for the slow path)
	vocab     map[string]int // the model's vocabulary (not the added tokens)
	merges    map[pair]merge // (left id, right id) → rank and merged id
	cache     *wordCache     // pre-token → ids

	// ignoreMerges (Llama 3): a pre-token that is a vocab token as a whole is that token. whole
	// maps the pre-token as the model receives it (raw bytes in byte-level mode) to its id.
	ignoreMerges bool
	whole        map[string]int32

	byteFallback bool
	fallback     [256]int32 // id of <0xNN>, -1 when the vocab lacks it
	unk          int32      // id of unk_token, -1 when none
	fuseUnk      bool
}

// simpleMax is the word length (in symbols) up to which the quadratic merge loop is used; longer
// words use the heap with a linked list, which gives the same result (see the tests).
const simpleMax = 48

// encodeWord appends the BPE ids of one pre-token to dst.
func (m *bpe) encodeWord(dst []int, word string) []int {
	if word == "" {
		return dst
	}
	if m.ignoreMerges {
		if id, ok := m.whole[word]; ok {
			return append(dst, int(id))
		}
	}
	if ids, ok := m.cache.get(word); ok {
		return append(dst, ids...)
	}
	var sym []int32
	if m.byteLevel && m.allBytes {
		if len(word) <= simpleMax {
			sym = m.mergeSimple(word)
		} else {
			sym = m.mergeHeap(word)
		}
	} else {
		sym = m.initial(word)
		if len(sym) <= simpleMax {
			sym = m.mergeSimpleSyms(sym)
		} else {
			sym = m.mergeHeapSyms(sym)
		}
	}
	ids := make([]int, len(sym))
	for i, id := range sym {
		ids[i] = int(id)
	}
	m.cache.put(word, ids)
	return append(dst, ids...)
}

// initial returns the symbols a word starts from, as HF's BPE::merge_word builds them: each
// character's vocab id; else, with byte_fallback, the <0xNN> tokens of its bytes when all exist;
// else the unknown token (consecutive ones fused into one with fuse_unk; a pending unknown token
// is written when the next character is found in the vocab or at the end, not before byte
// fallback tokens, exactly as HF does); else nothing (HF drops the character).
func (m *bpe) initial(word string) []int32 {
	sym := make([]int32, 0, len(word))
	pending := false // an unknown token not yet written
	for i := 0; i < len(word); {
		var ch string
		id := int32(-1)
		if m.byteLevel {
			ch = m.byteChar[word[i]]
			id = m.byteID[word[i]]
			i++
		} else {
			_, n := decodeAt(word, i)
			ch = word[i : i+n]
			if v, ok := m.vocab[ch]; ok {
				id = int32(v)
			}
			i += n
		}
		if id >= 0 {
			if pending {
				sym, pending = append(sym, m.unk), false
			}
			sym = append(sym, id)
			continue
		}
		if m.byteFallback {
			all := true
			for j := 0; j < len(ch); j++ {
				if m.fallback[ch[j]] < 0 {
					all = false
					break
				}
			}
			if all {
				for j := 0; j < len(ch); j++ {
					sym = append(sym, m.fallback[ch[j]])
				}
				continue
			}
		}
		if m.unk >= 0 {
			if pending && !m.fuseUnk {
				sym = append(sym, m.unk)
			}
			pending = true
		}
	}
	if pending {
		sym = append(sym, m.unk)
	}
	return sym
}

// mergeSimple merges the bytes of a byte-level word (every byte in the vocab) by repeatedly
// applying the lowest-rank pair (leftmost on ties).
func (m *bpe) mergeSimple(word string) []int32 {
	var buf [simpleMax]int32
	sym := buf[:len(word)]
	for i := 0; i < len(word); i++ {
		sym[i] = m.byteID[word[i]]
	}
	return m.mergeSimpleSyms(sym)
}

// mergeSimpleSyms merges sym in place (lowest rank first, leftmost on ties) and returns a copy.
func (m *bpe) mergeSimpleSyms(sym []int32) []int32 {
	for len(sym) > 1 {
		best, bestAt := merge{rank: -1}, -1
		for i := 0; i+1 < len(sym); i++ {
			if mg, ok := m.merges[pair{sym[i], sym[i+1]}]; ok && (bestAt < 0 || mg.rank < best.rank) {
				best, bestAt = mg, i
			}
		}
		if bestAt < 0 {
			break
		}
		sym[bestAt] = best.id
		sym = append(sym[:bestAt+1], sym[bestAt+2:]...)
	}
	return append([]int32(nil), sym...)
}

// heapItem is a candidate merge of the symbol at pos with its right neighbour.
type heapItem struct {
	rank, pos   int32
	left, right int32 // the two ids when pushed, to detect stale entries
}

// mergeHeap is a binary min-heap of candidate merges by (rank, position), typed to avoid
// container/heap's boxing.
type mergeHeap []heapItem

func (h mergeHeap) less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}

func (h *mergeHeap) push(it heapItem) {
	*h = append(*h, it)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *mergeHeap) pop() heapItem {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s.less(l, m) {
			m = l
		}
		if r < n && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// mergeHeap merges the bytes of a byte-level word (every byte in the vocab) with mergeHeapSyms.
func (m *bpe) mergeHeap(word string) []int32 {
	sym := make([]int32, len(word))
	for i := 0; i < len(word); i++ {
		sym[i] = m.byteID[word[i]]
	}
	return m.mergeHeapSyms(sym)
}

// mergeHeapSyms is HF's algorithm: a priority queue of (rank, position) over a doubly linked list
// of symbols; stale entries (whose symbols changed) are skipped.
func (m *bpe) mergeHeapSyms(id []int32) []int32 {
	n := len(id)
	if n == 0 {
		return nil
	}
	prev := make([]int32, n)
	next := make([]int32, n)
	alive := make([]bool, n)
	for i := 0; i < n; i++ {
		prev[i], next[i], alive[i] = int32(i-1), int32(i+1), true
	}
	next[n-1] = -1
	h := make(mergeHeap, 0, n)
	push := func(p int32) {
		q := next[p]
		if q < 0 {
			return
		}
		if mg, ok := m.merges[pair{id[p], id[q]}]; ok {
			h.push(heapItem{rank: mg.rank, pos: p, left: id[p], right: id[q]})
		}
	}
	for i := 0; i+1 < n; i++ {
		push(int32(i))
	}
	for len(h) > 0 {
		it := h.pop()
		p := it.pos
		q := next[p]
		if !alive[p] || q < 0 || id[p] != it.left || id[q] != it.right {
			continue
		}
		mg := m.merges[pair{id[p], id[q]}]
		id[p] = mg.id
		alive[q] = false
		next[p] = next[q]
		if next[q] >= 0 {
			prev[next[q]] = p
		}
		if prev[p] >= 0 {
			push(prev[p])
		}
		push(p)
	}
	out := make([]int32, 0, n)
	for p := int32(0); p >= 0; p = next[p] {
		out = append(out, id[p])
	}
	return out
}

// wordCache is a bounded concurrency-safe map from pre-token to ids. When full it stops
// accepting new words (as HF's cache does).
type wordCache struct {
	mu      sync.RWMutex
	m       map[string][]int
	maxSize int
	maxWord int
}

func newWordCache(maxSize, maxWord int) *wordCache {
	return &wordCache{m: make(map[string][]int, 1024), maxSize: maxSize, maxWord: maxWord}
}

func (c *wordCache) get(w string) ([]int, bool) {
	if len(w) > c.maxWord {
		return nil, false
	}
	c.mu.RLock()
	ids, ok := c.m[w]
	c.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(w string, ids []int) {
	if len(w) > c.maxWord {
		return
	}
	c.mu.Lock()
	if len(c.m) < c.maxSize {
		c.m[string([]byte(w))] = ids // copy: w may alias a large input text
	}
	c.mu.Unlock()
}
