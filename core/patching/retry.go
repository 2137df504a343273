package patching

import "github.com/simplescope/simplescope/core/torch"

// forChunks runs f on [0, n) in chunks of at most *size items. A chunk of more than one item
// that runs out of memory is halved (*size too, for the chunks after it) and retried; it returns
// how many retries that took.
func forChunks(n int, size *int, f func(lo, hi int) error) (retries int, err error) {
	*size = max(1, *size)
	for lo := 0; lo < n; {
		hi := min(n, lo+*size)
		err := f(lo, hi)
		if torch.IsOOM(err) && hi-lo > 1 {
			*size = max(1, (hi-lo)/2)
			retries++
			continue
		}
		if err != nil {
			return retries, err
		}
		lo = hi
	}
	return retries, nil
}
