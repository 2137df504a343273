package gptj

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A weight file truncated while it is memory-mapped makes reads past the new end fault
// (SIGBUS). faultSafeCopy must turn that into an error.
func TestFaultSafeCopyOnTruncatedMapping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.bin")
	const size = 1 << 20
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mapped, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mapped)
	dst := make([]byte, 4096)
	if err := faultSafeCopy(dst, mapped[:4096]); err != nil {
		t.Fatalf("copy from an intact mapping: %v", err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	err = faultSafeCopy(dst, mapped[size/2:size/2+4096])
	if err == nil {
		t.Fatal("copy from a truncated mapping succeeded")
	}
	t.Logf("truncated mapping: %v", err)
}
