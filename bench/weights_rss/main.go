// Command weights_rss opens checkpoints with core/weights, reads every byte of every tensor,
// and reports private (RssAnon) and file-backed (RssFile) resident memory, before and at peak.
// The point: tensors are served from a memory map, so private memory stays flat whatever the
// checkpoint's size (RssFile grows with the pages touched; the kernel can drop them).
//
// Make a test model (GPT-J, n_embd 2048, 4 layers, vocab 50400: 1.6 GB fp32 in each format):
//
//	.venv/bin/python core/weights/testdata/make_ckpt.py /tmp/wbig big 2048 4
//	go run ./bench/weights_rss /tmp/wbig/st /tmp/wbig/bin
//
// With -copy every tensor is also copied into Go memory and kept, as an eager loader would:
// the contrast shows what mapping saves.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/simplescope/simplescope/core/weights"
)

// memStatus reads the named fields of /proc/self/status, in kB.
func memStatus() map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 2 && fs[1] == "kB" {
			n, _ := strconv.ParseInt(fs[0], 10, 64)
			out[k] = n
		}
	}
	return out
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

func run(dir string, keepCopies bool) error {
	before := memStatus()
	start := time.Now()
	s, err := weights.Open(dir)
	if err != nil {
		return err
	}
	defer s.Close()
	opened := time.Since(start)
	var peakAnon, peakFile, total int64
	var sum uint64
	var kept [][]byte
	for _, k := range s.Keys() {
		b, _, err := s.Bytes(k)
		if err != nil {
			return err
		}
		for i := 0; i+8 <= len(b); i += 8 { // touch every page: a checksum over the words
			sum += binary.LittleEndian.Uint64(b[i:])
		}
		if keepCopies {
			kept = append(kept, append([]byte(nil), b...))
		}
		total += int64(len(b))
		m := memStatus()
		peakAnon = max(peakAnon, m["RssAnon"])
		peakFile = max(peakFile, m["RssFile"])
	}
	read := time.Since(start) - opened
	fmt.Printf("%s (%s, %d tensors, %.2f GB): open %v, read all %v (%.2f GB/s), checksum %x\n",
		dir, s.Format(), len(s.Keys()), float64(total)/1e9, opened.Round(time.Microsecond), read.Round(time.Millisecond),
		float64(total)/1e9/read.Seconds(), sum)
	fmt.Printf("  RssAnon: before %s, peak %s (+%s)   RssFile: before %s, peak %s   copies kept: %v (%d)\n",
		mib(before["RssAnon"]), mib(peakAnon), mib(peakAnon-before["RssAnon"]),
		mib(before["RssFile"]), mib(peakFile), keepCopies, len(kept))
	return nil
}

func main() {
	keep := flag.Bool("copy", false, "also copy every tensor into Go memory and keep it (eager loading, for contrast)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: weights_rss [-copy] DIR...")
		os.Exit(2)
	}
	for _, dir := range flag.Args() {
		if err := run(dir, *keep); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
