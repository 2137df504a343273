package patching

import "sort"

// job is a set of rows that run together: they share a target prefix whose K/V is computed once
// (prefixLen tokens of target; 0 for the pool of rows whose target no other row shares).
type job struct {
	target    []int // the shared target (nil for the pool)
	prefixLen int
	rows      []int // indices into the rows
	// start >= 0 marks a continuation job: every row writes only its target's last position and
	// starts at block start with its vector (no tail tokens run); -1 runs the tails.
	start int
}

// plan groups rows into jobs. Rows that share a target share the prefix before the first
// position any of them writes; a shared target whose rows write only its last position becomes
// continuation jobs (one per start block) when continuations is set (Patch: nothing reads the
// lower blocks of the last position); rows with a target of their own form one pool, batched
// with padding. Jobs come in the order of their first row.
func plan(rows []Row, site Site, continuations bool) []job {
	byTarget := map[string][]int{}
	var order []string
	for i, r := range rows {
		k := key(r.Target)
		if _, ok := byTarget[k]; !ok {
			order = append(order, k)
		}
		byTarget[k] = append(byTarget[k], i)
	}
	var jobs []job
	pool := job{start: -1}
	for _, k := range order {
		idx := byTarget[k]
		if len(idx) == 1 {
			pool.rows = append(pool.rows, idx[0])
			continue
		}
		target := rows[idx[0]].Target
		if continuations && onlyLast(rows, idx) {
			jobs = append(jobs, continuationJobs(rows, idx, site, target)...)
			continue
		}
		jobs = append(jobs, job{target: target, prefixLen: firstPosition(rows, idx), rows: idx, start: -1})
	}
	if len(pool.rows) > 0 {
		jobs = append(jobs, pool)
	}
	sort.SliceStable(jobs, func(a, b int) bool { return jobs[a].rows[0] < jobs[b].rows[0] })
	return jobs
}

// continuationJobs splits rows of one target (all writing its last position) by start block.
func continuationJobs(rows []Row, idx []int, site Site, target []int) []job {
	byStart := map[int]int{} // start block -> job index
	var jobs []job
	for _, i := range idx {
		st := startBlock(site, rows[i].Layer)
		j, ok := byStart[st]
		if !ok {
			j = len(jobs)
			byStart[st] = j
			jobs = append(jobs, job{target: target, prefixLen: len(target) - 1, start: st})
		}
		jobs[j].rows = append(jobs[j].rows, i)
	}
	return jobs
}

func onlyLast(rows []Row, idx []int) bool {
	for _, i := range idx {
		for _, p := range rows[i].Positions {
			if p != len(rows[i].Target)-1 {
				return false
			}
		}
	}
	return true
}

// firstPosition is the first position any of the rows writes: the tokens before it form the
// shared prefix.
func firstPosition(rows []Row, idx []int) int {
	first := len(rows[idx[0]].Target)
	for _, i := range idx {
		for _, p := range rows[i].Positions {
			first = min(first, p)
		}
	}
	return first
}

func key(ids []int) string {
	b := make([]byte, 0, 4*len(ids))
	for _, id := range ids {
		b = append(b, byte(id), byte(id>>8), byte(id>>16), byte(id>>24))
	}
	return string(b)
}
