package jitsu

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestXLLauncher checks the xl commands run for a boot, a suspend, a
// resume and a clean stop (xl itself is not installed here: a recording
// runner stands in, and a loopback listener stands in for the guest).
func TestXLLauncher(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mail.cfg")
	os.WriteFile(cfg, []byte("kernel = \"vmlinuz\"\nname = \"nymote-mail\"\nmemory = 256\n"), 0o600)
	guest, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	go func() {
		for {
			c, err := guest.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := guest.Addr().(*net.TCPAddr).Port
	var mu sync.Mutex
	var ran []string
	alive := true
	run := func(ctx context.Context, args ...string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		line := strings.Join(args, " ")
		if args[1] == "domid" {
			if !alive {
				return nil, errors.New("no such domain")
			}
			return []byte("3\n"), nil
		}
		ran = append(ran, line)
		if args[1] == "shutdown" {
			alive = false
		}
		return nil, nil
	}
	l := &XLLauncher{Config: cfg, Guest: "127.0.0.1", Ports: []PortConfig{{Name: "imap", Port: port}}, Run: run, Poll: 10 * time.Millisecond}
	inst, err := l.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := inst.Addr("imap"), "127.0.0.1:"+strconv.Itoa(port); got != want {
		t.Errorf("Addr: got %s, want %s", got, want)
	}
	s := inst.(Suspender)
	s.Suspend(context.Background())
	s.Resume(context.Background())
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-inst.Done()
	if inst.Err() != nil {
		t.Errorf("Err after a clean stop: %v", inst.Err())
	}
	want := []string{"xl create -q " + cfg, "xl pause nymote-mail", "xl unpause nymote-mail", "xl shutdown -w nymote-mail"}
	if !reflect.DeepEqual(ran, want) {
		t.Errorf("xl commands:\ngot  %q\nwant %q", ran, want)
	}

	// A domain that goes away by itself is a crash.
	mu.Lock()
	alive, ran = true, nil
	mu.Unlock()
	inst, err = l.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	alive = false
	mu.Unlock()
	select {
	case <-inst.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a vanished domain was not noticed")
	}
	if inst.Err() == nil {
		t.Error("a vanished domain has no error")
	}

	// A guest that never listens: destroyed after the boot timeout.
	guest.Close()
	mu.Lock()
	alive, ran = true, nil
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := l.Start(ctx); err == nil {
		t.Fatal("Start with a guest that never listens succeeded")
	}
	if len(ran) != 2 || ran[1] != "xl destroy nymote-mail" {
		t.Errorf("after a failed boot: %q, want create then destroy", ran)
	}
}

// TestFirecracker checks the command line (the API calls are tested in
// package launch) and that Start says why it fails without firecracker.
func TestFirecracker(t *testing.T) {
	l := &FirecrackerLauncher{Config: "/srv/mail/vm.json"}
	if got, want := strings.Join(l.Command("/run/fc.sock"), " "), "firecracker --api-sock /run/fc.sock --config-file /srv/mail/vm.json"; got != want {
		t.Errorf("command: got %q, want %q", got, want)
	}
	l.Binary = "/nonexistent/firecracker"
	if _, err := l.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "/nonexistent/firecracker") {
		t.Errorf("Start without the binary: %v", err)
	}
}
