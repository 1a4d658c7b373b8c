package launch

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// TestXLDomain reads the domain's name as xl does, and refuses a
// configuration without one or that xl would not parse, naming the file.
func TestXLDomain(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ cfg, want, err string }{
		{"kernel = \"vmlinux\"\nname = \"nymote-mail\"\nmemory = 256\n", "nymote-mail", ""},
		{"name = 'a' ; memory = 128", "a", ""},
		{"memory = 256\n", "", "no name"},
		{"name = [ 'a' ]\n", "", "no name"},
		{"name = nymote-mail\n", "", "line 1"},
	} {
		cfg := filepath.Join(dir, "xl.cfg")
		os.WriteFile(cfg, []byte(tc.cfg), 0o600)
		got, err := XLDomain(cfg)
		if tc.err == "" && (err != nil || got != tc.want) {
			t.Errorf("%q: got %q, %v; want %q", tc.cfg, got, err, tc.want)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), cfg)) {
			t.Errorf("%q: got %q, %v; want an error naming %s with %q", tc.cfg, got, err, cfg, tc.err)
		}
	}
	if _, err := XLDomain(filepath.Join(dir, "missing.cfg")); err == nil {
		t.Error("a missing configuration: no error")
	}
}

// TestFirecrackerAPI makes the API calls against a stand-in API server on
// a unix socket (firecracker is not installed here), and checks that
// StartFirecracker says why it fails without the program.
func TestFirecrackerAPI(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	f := &Firecracker{sock: sock}
	for _, op := range []string{"suspend", "resume", "stop"} {
		if err := f.API(context.Background(), op); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	want := []string{
		`PATCH /vm {"state":"Paused"}`,
		`PATCH /vm {"state":"Resumed"}`,
		`PUT /actions {"action_type":"SendCtrlAltDel"}`,
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("API calls:\ngot  %q\nwant %q", got, want)
	}
	if err := f.API(context.Background(), "reboot"); err == nil || !strings.Contains(err.Error(), "reboot") {
		t.Errorf("an unknown call: %v", err)
	}
	if _, err := StartFirecracker("/nonexistent/firecracker", "/srv/vm.json", nil); err == nil || !strings.Contains(err.Error(), "/nonexistent/firecracker") {
		t.Errorf("StartFirecracker without the binary: %v", err)
	}
}
