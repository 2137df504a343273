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
