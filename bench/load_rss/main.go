// Command load_rss loads checkpoints (of any supported family) with core/gptj (tensor by tensor,
// straight into the requested dtype on the CPU) and reports the peak private memory (RssAnon,
// sampled every 5 ms) against the model's size in that dtype: loading must hold one copy of the
// model plus at most a few tensors, never two copies. (Each tensor is copied out of the memory
// map into one reused buffer — so a file truncated underneath is an error, not a SIGBUS — hence
// the peak is the model plus the largest tensor in its stored dtype; the buffer is handed back
// after loading.) A tied head is the embedding tensor itself and adds nothing;
// bench/families_side_by_side.py --rss runs this on a checkpoint of every family.
//
//	.venv/bin/python core/weights/testdata/make_ckpt.py /tmp/wbig big 2048 4
//	make build && go run ./bench/load_rss -dtype float32 /tmp/wbig/st /tmp/wbig/bin
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
	"github.com/simplescope/simplescope/core/weights"
)

func rssAnonKB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			fs := strings.Fields(v)
			n, _ := strconv.ParseInt(fs[0], 10, 64)
			return n
		}
	}
	return 0
}

func main() {
	dtypeName := flag.String("dtype", "float32", "dtype to load into")
	flag.Parse()
	dt, err := torch.ParseDType(*dtypeName)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, dir := range flag.Args() {
		st, err := weights.Open(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var elems, largest int64
		for _, k := range st.Keys() {
			info, _ := st.Info(k)
			if weights.IsAttentionBuffer(k) {
				continue
			}
			n := int64(1)
			for _, d := range info.Shape {
				n *= d
			}
			elems += n
			largest = max(largest, n)
		}
		st.Close()
		modelMB := float64(elems*int64(dt.Size())) / (1 << 20)
		largestMB := float64(largest*int64(dt.Size())) / (1 << 20)

		before := rssAnonKB()
		var peak atomic.Int64
		peak.Store(before)
		stop := make(chan struct{})
		go func() {
			t := time.NewTicker(5 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if v := rssAnonKB(); v > peak.Load() {
						peak.Store(v)
					}
				}
			}
		}()
		t0 := time.Now()
		m, err := gptj.Load(dir, dt, torch.CPU)
		elapsed := time.Since(t0)
		close(stop)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if v := rssAnonKB(); v > peak.Load() {
			peak.Store(v)
		}
		after := rssAnonKB()
		m.Close()
		grow := float64(peak.Load()-before) / 1024
		fmt.Printf("%s -> %s: model %.0f MiB (largest tensor %.0f MiB); RssAnon %.0f MiB before, peak +%.0f MiB (%.2f× the model), +%.0f MiB after load; %.2fs\n",
			dir, dt, modelMB, largestMB, float64(before)/1024, grow, grow/modelMB, float64(after-before)/1024, elapsed.Seconds())
	}
}
