package cli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/store"
)

// run runs the command line in-process.
func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, IO{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	code, out, errs := run(t, stdin, args...)
	if code != 0 {
		t.Fatalf("nymote %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func TestStoreAndUserCommands(t *testing.T) {
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	if code, _, errs := run(t, "", "store", "init", "--data", data); code != 1 || !strings.Contains(errs, "already exists") {
		t.Errorf("second init: exit %d, %q", code, errs)
	}
	mustRun(t, "correct horse\n", "user", "add", "alice", "--git", "write", "--password-stdin", "--data", data)
	mustRun(t, "bobs password\n", "user", "add", "bob", "--password-stdin", "--data", data)
	out := mustRun(t, "", "user", "list", "--data", data)
	if !strings.Contains(out, "alice  write") || !strings.Contains(out, "bob    none") {
		t.Errorf("user list:\n%s", out)
	}
	mustRun(t, "new password\n", "user", "passwd", "bob", "--password-stdin", "--data", data)
	mustRun(t, "", "user", "git", "bob", "read", "--data", data)
	mustRun(t, "", "user", "del", "bob", "--data", data)

	out = mustRun(t, "", "store", "log", "--data", data)
	for _, want := range []string{"user add alice", "user passwd bob", "user del bob"} {
		if !strings.Contains(out, want) {
			t.Errorf("store log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "correct horse") {
		t.Error("a password appears in the log")
	}
	out = mustRun(t, "", "store", "log", "users/bob", "--data", data, "-n", "1")
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "user del bob") {
		t.Errorf("store log users/bob -n 1:\n%s", out)
	}
	out = mustRun(t, "", "store", "show", "--data", data)
	if !strings.Contains(out, "delete users/bob") {
		t.Errorf("store show:\n%s", out)
	}
	mustRun(t, "", "store", "revert", "main", "--data", data, "-m", "bring bob back")
	if out := mustRun(t, "", "store", "ls", "users", "--data", data); !strings.Contains(out, "users/bob") {
		t.Errorf("after revert, ls users:\n%s", out)
	}
	mustRun(t, "", "store", "branch", "create", "side", "--data", data)
	if out := mustRun(t, "", "store", "branch", "--data", data); !strings.Contains(out, "side") || !strings.Contains(out, "main") {
		t.Errorf("branch list:\n%s", out)
	}
	mustRun(t, "", "store", "branch", "delete", "side", "--data", data)
	if out := mustRun(t, "", "store", "gc", "--data", data); !strings.Contains(out, "Packed") {
		t.Errorf("gc: %s", out)
	}

	// Clone, diverge, pull (merge) and push by path.
	data2 := t.TempDir()
	mustRun(t, "", "store", "clone", filepath.Join(data, "store.git"), "--data", data2)
	mustRun(t, "carols password\n", "user", "add", "carol", "--password-stdin", "--data", data2)
	mustRun(t, "daves password\n", "user", "add", "dave", "--password-stdin", "--data", data)
	if out := mustRun(t, "", "store", "pull", filepath.Join(data, "store.git"), "--data", data2); !strings.Contains(out, "Merged") {
		t.Errorf("pull: %s", out)
	}
	mustRun(t, "", "store", "push", filepath.Join(data, "store.git"), "--data", data2)
	if out := mustRun(t, "", "user", "list", "--data", data); !strings.Contains(out, "carol") || !strings.Contains(out, "dave") {
		t.Errorf("after push, users:\n%s", out)
	}
	if _, err := exec.LookPath("git"); err == nil {
		if out, err := exec.Command("git", "-C", filepath.Join(data, "store.git"), "fsck", "--strict").CombinedOutput(); err != nil {
			t.Errorf("git fsck: %v\n%s", err, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"store", "log"}, 2, "--data is required"},
		{[]string{"store", "show", "a", "b", "--data", "x"}, 2, "usage: nymote store show [REV]"},
		{[]string{"store", "frobnicate"}, 2, "unknown command"},
		{[]string{"store", "log", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"store", "log", "--data", "/nonexistent"}, 1, "nymote store init --data /nonexistent"},
		{[]string{"user", "add", "Bad Name", "--password-stdin", "--data", "/nonexistent"}, 1, "no repository"},
		{[]string{"--log-level", "loud", "store", "log"}, 2, "--log-level \"loud\""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errs := run(t, "", tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d saying %q", code, errs, tc.code, tc.want)
			}
		})
	}
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"user", "add", "Bad Name", "--password-stdin"}, "long enough\n", "user name"},
		{[]string{"user", "add", "eve", "--password-stdin"}, "short\n", "at least 8"},
		{[]string{"user", "add", "eve", "--git", "all", "--password-stdin"}, "long enough\n", "want none, read or write"},
		{[]string{"user", "add", "eve"}, "", "use --password-stdin"},
		{[]string{"user", "passwd", "nobody", "--password-stdin"}, "long enough\n", "user nobody"},
		{[]string{"store", "cat", "../etc/passwd"}, "", `segment 1 is ".."`},
		{[]string{"store", "show", "nosuchrev"}, "", `revision "nosuchrev"`},
	} {
		code, _, errs := run(t, tc.stdin, append(tc.args, "--data", data)...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("nymote %v: exit %d, stderr %q; want an error saying %q", tc.args, code, errs, tc.want)
		}
	}
}

// TestServe clones over git smart HTTPS, the certificate trusted from the
// node file it prints (GIT_SSL_CAINFO, not skipping verification), and over plain HTTP with
// --insecure-http; a wrong password is refused, and plain HTTP to the HTTPS
// port gets no answer.
func TestServe(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed (make test-deps installs it)")
	}
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	mustRun(t, "owner password\n", "user", "add", "owner", "--git", "read", "--password-stdin", "--data", data)
	s, err := store.OpenData(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		name     string
		insecure bool
		password string
		wantErr  string // in git's output; "" for a clone that succeeds
	}{
		{name: "https", password: "owner%20password"},
		{name: "https wrong password", password: "guess", wantErr: "Authentication failed"},
		{name: "insecure http", insecure: true, password: "owner%20password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			pr, pw := io.Pipe()
			defer pr.Close()
			go func() {
				done <- serveGit(ctx, &globals{stdio: IO{Out: pw, Err: pw}, log: discardLog()}, s, ln, serveOptions{insecure: tc.insecure})
				pw.Close()
			}()
			scheme := map[bool]string{false: "https", true: "http"}[tc.insecure]
			// Wait for the line that says it serves: the certificate is
			// written by then.
			want := "store git listening on " + scheme + "://" + ln.Addr().String()
			var out strings.Builder
			sc := bufio.NewScanner(pr)
			for !strings.Contains(out.String(), want) {
				if !sc.Scan() {
					t.Fatalf("serve printed %q, want %q in it", out.String(), want)
				}
				out.WriteString(sc.Text() + "\n")
			}
			go io.Copy(io.Discard, pr)
			var env []string
			if !tc.insecure {
				cert := filepath.Join(data, "node", "tls", "cert.pem")
				if !strings.Contains(out.String(), "GIT_SSL_CAINFO="+cert) {
					t.Errorf("serve printed %q, want it to name the certificate %s", out.String(), cert)
				}
				env = []string{"GIT_SSL_CAINFO=" + cert}
				// Plain HTTP to the HTTPS port: the handshake fails, no
				// HTTP answer, no password read.
				resp, err := http.Get("http://" + ln.Addr().String() + "/info/refs?service=git-upload-pack")
				if err == nil {
					resp.Body.Close()
					t.Errorf("plain HTTP to the HTTPS port answered %s", resp.Status)
				}
			}
			clone := filepath.Join(t.TempDir(), "c")
			cmd := exec.Command("git", "clone", "--quiet", scheme+"://owner:"+tc.password+"@"+ln.Addr().String()+"/", clone)
			cmd.Env = append(cmd.Environ(), append(env, "GIT_TERMINAL_PROMPT=0")...)
			b, err := cmd.CombinedOutput()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("git clone: %v\n%s", err, b)
			case tc.wantErr != "" && (err == nil || !strings.Contains(string(b), tc.wantErr)):
				t.Fatalf("git clone: %v\n%s\nwant an error saying %q", err, b, tc.wantErr)
			}
			if !tc.insecure && tc.wantErr == "" {
				// nymote's own clone trusts the served certificate by
				// --ca-file, and refuses it without.
				t.Setenv("NYMOTE_PASSWORD", "owner password")
				url := "https://" + ln.Addr().String() + "/"
				cert := filepath.Join(data, "node", "tls", "cert.pem")
				if code, _, errs := run(t, "", "store", "clone", url, "--data", filepath.Join(t.TempDir(), "untrusted"), "--user", "owner"); code == 0 || !strings.Contains(errs, "certificate") {
					t.Errorf("store clone without --ca-file: exit %d, stderr %q; want a certificate error", code, errs)
				}
				mustRun(t, "", "store", "clone", url, "--data", filepath.Join(t.TempDir(), "trusted"), "--user", "owner", "--ca-file", cert)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve returned %v after cancel", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("serve did not stop")
			}
		})
	}
}

// TestServeInsecureHTTPLoopbackOnly: --insecure-http refuses a listen address
// other than loopback, naming the flag.
func TestServeInsecureHTTPLoopbackOnly(t *testing.T) {
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	code, _, errs := run(t, "", "store", "serve", "--data", data, "--insecure-http", "--listen", "0.0.0.0:0")
	if code == 0 || !strings.Contains(errs, "--insecure-http") || !strings.Contains(errs, "loopback") {
		t.Errorf("store serve --insecure-http --listen 0.0.0.0:0: exit %d, stderr %q; want a refusal naming --insecure-http and loopback", code, errs)
	}
}

func TestUserQuota(t *testing.T) {
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	mustRun(t, "correct horse\n", "user", "add", "alice", "--password-stdin", "--data", data)
	out := mustRun(t, "", "user", "list", "--data", data)
	if !strings.Contains(out, "STORAGE  MESSAGES") || !strings.Contains(out, "alice  none  none     none") {
		t.Errorf("user list without quota:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		want string // in user list
	}{
		{[]string{"--storage", "500M", "--messages", "1000"}, "alice  none  500M     1000"},
		{[]string{"--messages", "20"}, "alice  none  500M     20"}, // storage stays
		{[]string{"--storage", "2GiB"}, "alice  none  2G       20"},
		{[]string{"--storage", "1536k"}, "alice  none  1536K    20"},
		{[]string{"--storage", "none", "--messages", "0"}, "alice  none  none     none"},
	} {
		mustRun(t, "", append([]string{"user", "quota", "alice", "--data", data}, tc.args...)...)
		if out := mustRun(t, "", "user", "list", "--data", data); !strings.Contains(out, tc.want) {
			t.Errorf("after quota %v, user list:\n%s\nwant %q", tc.args, out, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"alice"}, "give --storage SIZE, --messages N or both"},
		{[]string{"alice", "--storage", "500"}, "give a unit"},
		{[]string{"alice", "--storage", "-5M"}, "whole number above 0"},
		{[]string{"alice", "--storage", "lots"}, "give a unit"},
		{[]string{"alice", "--storage", "99999999999T"}, "at most"},
		{[]string{"alice", "--messages", "many"}, "whole number of messages"},
		{[]string{"alice", "--messages", "-1"}, "whole number of messages"},
		{[]string{"nobody", "--messages", "5"}, "user nobody"},
	} {
		code, _, errs := run(t, "", append([]string{"user", "quota", "--data", data}, tc.args...)...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("nymote user quota %v: exit %d, stderr %q; want an error saying %q", tc.args, code, errs, tc.want)
		}
	}
}

func TestUserAppPassword(t *testing.T) {
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	mustRun(t, "correct horse\n", "user", "add", "alice", "--password-stdin", "--data", data)
	pw := strings.TrimSpace(mustRun(t, "", "user", "app-password", "add", "alice", "phone", "--data", data))
	out := mustRun(t, "", "user", "app-password", "list", "alice", "--data", data)
	if !strings.Contains(out, "phone") || strings.Contains(out, pw) || !strings.HasPrefix(pw, strings.Fields(strings.Split(out, "\n")[1])[0]+"-") {
		t.Errorf("app-password add printed %q; list:\n%s", pw, out)
	}
	check := func(want error) {
		t.Helper()
		s, err := store.OpenData(data, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if u, err := s.AuthenticateClient("alice", pw); err != want || (err == nil && u.AppPassword != "phone") {
			t.Errorf("AuthenticateClient with the printed password: %+v, %v; want %v", u, err, want)
		}
	}
	check(nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "alice", "phone"}, "already exists"},
		{[]string{"add", "nobody", "phone"}, "user nobody"},
		{[]string{"add", "alice", ""}, "app password name"},
		{[]string{"del", "alice", "tablet"}, "tablet"},
		{[]string{"add", "alice"}, "CLIENT"},
	} {
		code, _, errs := run(t, "", append([]string{"user", "app-password", "--data", data}, tc.args...)...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("nymote user app-password %v: exit %d, stderr %q; want an error saying %q", tc.args, code, errs, tc.want)
		}
	}
	mustRun(t, "", "user", "app-password", "del", "alice", "phone", "--data", data)
	check(store.ErrAuthFailed)
	if out := mustRun(t, "", "user", "app-password", "list", "alice", "--data", data); strings.Contains(out, "phone") {
		t.Errorf("list after del:\n%s", out)
	}
}
