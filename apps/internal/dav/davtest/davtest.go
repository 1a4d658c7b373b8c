// Package davtest starts dav servers on loopback for tests: a fresh store
// with users, a Handler for a Kind, and HTTP helpers for raw requests.
package davtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/store"
)

// Users made by Start, with their passwords.
var Users = map[string]string{"alice": "alice-password", "bob": "bob-password"}

// Server is a running test server.
type Server struct {
	// URL is the base URL, such as http://127.0.0.1:PORT (no slash).
	URL   string
	Store *store.Store
	Dir   string
	t     testing.TB
}

// Start serves kind from a new store in a temporary directory, with the
// users in Users, until the test ends. opts may adjust the Handler.
func Start(t testing.TB, kind dav.Kind, opts ...func(*dav.Options)) *Server {
	t.Helper()
	dir := t.TempDir()
	st, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for u, p := range Users {
		if err := st.AddUser(ctx, u, p, store.GitNone); err != nil {
			t.Fatal(err)
		}
	}
	level := slog.LevelWarn
	if os.Getenv("DAV_DEBUG") != "" {
		level = slog.LevelDebug
	}
	o := dav.Options{Store: st, Kind: kind, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))}
	for _, f := range opts {
		f(&o)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- dav.Serve(sctx, dav.Config{Options: o, InsecureHTTP: true}, []dav.Listener{{Proto: "http", Listener: ln}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		st.Close()
	})
	return &Server{URL: "http://" + ln.Addr().String(), Store: st, Dir: dir, t: t}
}

// DataDir is the data directory of the server's store.
func (s *Server) DataDir() string { return filepath.Clean(s.Dir) }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// Response is a finished response.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// Do sends a request as user (no auth when user is ""), with headers as
// alternating names and values, and returns the response.
func (s *Server) Do(user, method, path, body string, headers ...string) Response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, Users[user])
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// BasicAuth is an http.Client transport wrapper that logs in as a user.
type BasicAuth struct {
	User, Password string
}

// Do implements go-webdav's HTTPClient.
func (b BasicAuth) Do(req *http.Request) (*http.Response, error) {
	req.SetBasicAuth(b.User, b.Password)
	return http.DefaultClient.Do(req)
}

// Client returns a go-webdav HTTPClient logged in as user.
func Client(user string) BasicAuth { return BasicAuth{User: user, Password: Users[user]} }

// VdirsyncerConfig writes a vdirsyncer configuration into dir/config and
// returns its path: pair p of the folder dir/local (files ending ext) and
// the collections of the server at url (storage carddav or caldav), as
// alice with password; extra (such as a conflict_resolution line) goes
// into the pair's section. vdirsyncer keeps its status in dir/status.
func VdirsyncerConfig(t testing.TB, dir, storage, url, ext, password, extra string) string {
	t.Helper()
	c := fmt.Sprintf(`[general]
status_path = %q

[pair p]
a = "local"
b = "remote"
collections = ["from b"]
%s

[storage local]
type = "filesystem"
path = %q
fileext = %q

[storage remote]
type = %q
url = %q
username = "alice"
password = %q
`, filepath.Join(dir, "status"), extra, filepath.Join(dir, "local"), ext, storage, url, password)
	p := filepath.Join(dir, "config")
	if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
