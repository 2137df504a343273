package tokenizer

import (
	"container/heap"
	"sync"
)

// pair is two adjacent token ids.
type pair struct{ a, b int32 }

// merge is the result of merging a pair: its rank (position in the merges list) and new id.
type merge struct{ rank, id int32 }

// bpe is the byte-level BPE model: the id of every byte, the merge table and a word cache.
type bpe struct {
	byteID [256]int32     // vocab id of the byte-level character of each byte
	merges map[pair]merge // (left id, right id) → rank and merged id
	cache  *wordCache     // pre-token → ids
}

// simpleMax is the word length (in symbols) up to which the quadratic merge loop is used; longer
// words use the heap with a linked list, which gives the same result (see the tests).
const simpleMax = 48

// encodeWord appends the BPE ids of one pre-token (raw bytes) to dst.
func (m *bpe) encodeWord(dst []int, word string) []int {
	if ids, ok := m.cache.get(word); ok {
		return append(dst, ids...)
	}
	var sym []int32
	if len(word) <= simpleMax {
		sym = m.mergeSimple(word)
	} else {
		sym = m.mergeHeap(word)
	}
	ids := make([]int, len(sym))
	for i, id := range sym {
		ids[i] = int(id)
	}
	m.cache.put(word, ids)
	return append(dst, ids...)
}

// mergeSimple merges by repeatedly applying the lowest-rank pair (leftmost on ties).
func (m *bpe) mergeSimple(word string) []int32 {
	var buf [simpleMax]int32
	sym := buf[:len(word)]
	for i := 0; i < len(word); i++ {
		sym[i] = m.byteID[word[i]]
	}
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

type mergeHeap []heapItem

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(heapItem)) }
func (h *mergeHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// mergeHeap is HF's algorithm: a priority queue of (rank, position) over a doubly linked list of
// symbols; stale entries (whose symbols changed) are skipped.
func (m *bpe) mergeHeap(word string) []int32 {
	n := len(word)
	id := make([]int32, n)
	prev := make([]int32, n)
	next := make([]int32, n)
	alive := make([]bool, n)
	for i := 0; i < n; i++ {
		id[i], prev[i], next[i], alive[i] = m.byteID[word[i]], int32(i-1), int32(i+1), true
	}
	next[n-1] = -1
	h := &mergeHeap{}
	push := func(p int32) {
		q := next[p]
		if q < 0 {
			return
		}
		if mg, ok := m.merges[pair{id[p], id[q]}]; ok {
			heap.Push(h, heapItem{rank: mg.rank, pos: p, left: id[p], right: id[q]})
		}
	}
	for i := 0; i+1 < n; i++ {
		push(int32(i))
	}
	for h.Len() > 0 {
		it := heap.Pop(h).(heapItem)
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
