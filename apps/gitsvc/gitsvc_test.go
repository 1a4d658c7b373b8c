package gitsvc_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/gitsvc"
	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/store"
)

// TestGuarded: the git endpoint's listener is guarded: a second connection
// from the same host over a per-host cap of one gets the 503 busy answer,
// and the server still answers the first; Shutdown makes Serve return nil.
func TestGuarded(t *testing.T) {
	st, err := store.InitData(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := gitsvc.New(gitsvc.Config{Store: st, Conns: guard.ListenerOptions{MaxConnsPerHost: 1}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()

	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// A full exchange on the first: it is accepted (and counted) before
	// the second is dialled.
	io.WriteString(first, "GET /info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(first), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous request: got %s, want 401", resp.Status)
	}

	second, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetDeadline(time.Now().Add(30 * time.Second)) // only a hung test
	b, _ := io.ReadAll(second)
	if !strings.HasPrefix(string(b), "HTTP/1.1 503") {
		t.Errorf("second connection over the per-host cap: got %q, want the 503 busy answer", b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after Shutdown: %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
}
