package testutil_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/nymote/nymote/internal/testutil"
)

// TestBufferConcurrent writes from many goroutines while reading (run with
// -race to see that Buffer needs no other lock) and checks every write is
// there, whole.
func TestBufferConcurrent(t *testing.T) {
	var b testutil.Buffer
	var wg sync.WaitGroup
	const writers, lines = 8, 100
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(&b, "w%d line %d\n", w, i)
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("got %d lines, want %d", len(got), writers*lines)
	}
	seen := map[string]bool{}
	for _, l := range got {
		seen[l] = true
	}
	for w := range writers {
		for i := range lines {
			if l := fmt.Sprintf("w%d line %d", w, i); !seen[l] {
				t.Errorf("missing line %q", l)
			}
		}
	}
}

// TestFreeAddr: the address is on loopback and can be listened on.
func TestFreeAddr(t *testing.T) {
	addr := testutil.FreeAddr(t)
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("FreeAddr = %q (%v), want 127.0.0.1:PORT", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreeAddr %s: %v", addr, err)
	}
	ln.Close()
	if p := testutil.FreePort(t); p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d, want 1..65535", p)
	}
}
