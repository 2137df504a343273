package api

import (
	"context"
	"strings"
	"sync"
	"testing"
)

// Closing a session while other goroutines call it waits for the calls in flight; every call
// either completes or is refused with "the model is closed" — none touches freed tensors.
func TestCloseWhileCalling(t *testing.T) {
	s, err := Open(modelDir(t, "tiny"), "cpu", "float32")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make(chan error, 64)
	started := make(chan struct{}, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 8; i++ {
				if i == 1 {
					started <- struct{}{}
				}
				_, err := Call(context.Background(), s, "evaluate", pack(t, smallEval(w+i)), nil)
				results <- err
			}
		}(w)
	}
	<-started
	s.Close()
	wg.Wait()
	close(results)
	ok, refused := 0, 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case strings.Contains(err.Error(), "the model is closed") && Status(err) == StatusInput:
			refused++
		default:
			t.Fatalf("a call racing with Close failed with %v (status %d)", err, Status(err))
		}
	}
	if ok == 0 || refused == 0 {
		t.Fatalf("%d calls completed and %d were refused; want some of each", ok, refused)
	}
	s.Close() // a second Close is harmless
}

// num_threads in a request sets the process's torch thread count, so it is bounded: a huge value
// made OpenMP abort the process on the next parallel op (found by FuzzCall).
func TestNumThreadsBounded(t *testing.T) {
	s := shared(t)
	for _, n := range []int{-1, 1 << 20} {
		_, err := Call(context.Background(), s, "config", pack(t, map[string]any{"num_threads": n}), nil)
		if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), "num_threads") {
			t.Fatalf("num_threads %d: error %v (status %d), want an input error naming num_threads", n, err, Status(err))
		}
	}
	if _, err := Call(context.Background(), s, "evaluate", pack(t, smallEval(1)), nil); err != nil {
		t.Fatalf("evaluate after refused thread counts: %v", err)
	}
}
