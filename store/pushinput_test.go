package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// lockedBuffer is a log sink the handler's goroutines and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPushRefusesBadInput pushes what a broken or hostile peer could send
// over git's smart HTTP (the endpoint replicas push to): a history with an
// invalid path, made with stock git's plumbing, and a corrupt pack. Each is
// refused with a clear reason, in the client's answer and in the log, and
// the store is as it was: its branch, its items, no pack left behind, git
// fsck clean.
func TestPushRefusesBadInput(t *testing.T) {
	s := newStore(t)
	for i := 0; i < 5; i++ {
		put(t, s, "items/"+Shard(fmt.Sprint(i)), fmt.Sprint("item ", i))
	}
	if err := s.AddUser(context.Background(), "alice", "alice-password", GitWrite); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	srv := httptest.NewServer(s.GitHandler(slog.New(slog.NewTextHandler(&logs, nil))))
	t.Cleanup(srv.Close)
	url := userURL(srv, "alice")
	work := t.TempDir()
	clone := filepath.Join(work, "clone")
	runGit(t, work, "clone", "--quiet", url, clone)

	before, err := s.Resolve(DefaultBranch)
	if err != nil {
		t.Fatal(err)
	}
	items := func() string {
		es, err := s.List("", "")
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, e := range es {
			data, _ := s.Read("", e.Path)
			fmt.Fprintf(&b, "%s=%s\n", e.Path, data)
		}
		return b.String()
	}
	itemsBefore := items()
	unchanged := func(what string) {
		t.Helper()
		if h, err := s.Resolve(DefaultBranch); err != nil || h != before {
			t.Errorf("after %s: main is %s (%v), want %s", what, h, err, before)
		}
		if got := items(); got != itemsBefore {
			t.Errorf("after %s: items\n%s\nwant\n%s", what, got, itemsBefore)
		}
		fsckOpen(t, s)
	}

	// A commit on main whose tree holds ".GIT" (a name git itself refuses
	// to check out), made with plumbing that does not check names.
	b := (gitIn(t, clone, "evil\n", "hash-object", "-w", "--stdin"))
	bad := (gitIn(t, clone, "100644 blob "+b+"\t.GIT\n", "mktree"))
	items0 := strings.TrimSpace(runGit(t, clone, "rev-parse", "HEAD:items"))
	root := (gitIn(t, clone, "040000 tree "+items0+"\titems\n040000 tree "+bad+"\tsneaky\n", "mktree"))
	commit := strings.TrimSpace(runGit(t, clone, "-c", "user.name=Mallory", "-c", "user.email=m@example.org", "commit-tree", root, "-p", "HEAD", "-m", "a path git refuses"))
	gitFail(t, clone, `refused: sneaky/.GIT (commit `, "push", url, commit+":refs/heads/main")
	if !strings.Contains(logs.String(), `msg="git: push refused"`) || !strings.Contains(logs.String(), "sneaky/.GIT") {
		t.Errorf("no log line names the refused path:\n%s", logs.String())
	}
	unchanged("a push of an invalid path")

	// A corrupt pack: a valid commit's pack with a byte flipped in the
	// middle of its compressed objects.
	os.WriteFile(filepath.Join(clone, "good.txt"), []byte("a good change\n"), 0o644)
	runGit(t, clone, "add", "good.txt")
	runGit(t, clone, "-c", "user.name=Carol", "-c", "user.email=c@example.org", "commit", "--quiet", "-m", "good")
	next := strings.TrimSpace(runGit(t, clone, "rev-parse", "HEAD"))
	pack := gitBytes(t, clone, next+"\n^"+before.String()+"\n", "pack-objects", "--revs", "--stdout", "-q")
	if len(pack) < 64 {
		t.Fatalf("pack of %d bytes", len(pack))
	}
	packsBefore := packNames(t, s)
	for _, at := range []int{len(pack) / 2, len(pack) - 5} { // an object's data; the trailing checksum
		corrupt := bytes.Clone(pack)
		corrupt[at] ^= 0x55
		cmd := fmt.Sprintf("%s %s refs/heads/main\x00report-status\n", before, next)
		body := fmt.Sprintf("%04x%s0000", len(cmd)+4, cmd) + string(corrupt)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/store.git/git-receive-pack", strings.NewReader(body))
		req.SetBasicAuth("alice", "alice-password")
		req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var answer bytes.Buffer
		answer.ReadFrom(resp.Body)
		resp.Body.Close()
		if !strings.Contains(answer.String(), "unpack failed") || !strings.Contains(answer.String(), "ng refs/heads/main") {
			t.Errorf("corrupt pack (byte %d of %d): answer %q, want the unpack failure and the branch refused", at, len(pack), answer.String())
		}
		unchanged(fmt.Sprintf("a corrupt pack (byte %d)", at))
		if got := packNames(t, s); got != packsBefore {
			t.Errorf("after a corrupt pack (byte %d): packs %s, want %s", at, got, packsBefore)
		}
	}
	if !strings.Contains(logs.String(), `msg="git: push: unpack failed"`) {
		t.Errorf("no log line for the corrupt pack:\n%s", logs.String())
	}

	// The same good commit, sent whole, is taken: the store still works.
	runGit(t, clone, "push", "--quiet", url, "HEAD:refs/heads/main")
	if data, err := s.Read("", "good.txt"); err != nil || string(data) != "a good change\n" {
		t.Errorf("after the good push: good.txt = %q, %v", data, err)
	}
	fsckOpen(t, s)
}

// gitBytes runs git with stdin and returns its standard output.
func gitBytes(t *testing.T, dir, stdin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// packNames lists the store's pack files.
func packNames(t *testing.T, s *Store) string {
	t.Helper()
	s.packsMu.Lock()
	defer s.packsMu.Unlock()
	names, err := filepath.Glob(filepath.Join(s.Path(), "objects", "pack", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return strings.Join(names, " ")
}

// A refused push's pack is removed again, unless a fetch that ran
// meanwhile recorded a commit in it: go-git's fetch does not ask for a
// commit the store already holds, wherever it lies, so the fetch's
// remote-tracking branch would point at a commit removed under it ("object
// not found" in the merge after the fetch).
func TestDiscardKeepsWhatAFetchRecorded(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	head, err := src.Update(ctx, CommitOptions{Message: "c"}, func(tx *Tx) error {
		return tx.Put("d/x", []byte("x"))
	})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := src.packObjects([]Hash{head}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var pack bytes.Buffer
	if err := src.encodePack(&pack, objs); err != nil {
		t.Fatal(err)
	}
	for _, fetched := range []bool{false, true} {
		s := newStore(t)
		d := &durableStorer{Storer: s.st, s: s}
		w, err := d.PackfileWriter()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(pack.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !s.has(head) {
			t.Fatal("the received pack's commit is not readable")
		}
		if fetched {
			if err := s.writeRef(plumbing.NewRemoteReferenceName("peer", "main"), head); err != nil {
				t.Fatal(err)
			}
		}
		unlock, err := s.lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d.discard()
		unlock()
		if got := s.has(head); got != fetched {
			t.Errorf("fetch recorded the commit: %v; the commit there after discard: %v", fetched, got)
		}
		if fetched {
			if _, err := s.snapshotAt(head); err != nil {
				t.Errorf("the fetched commit: %v", err)
			}
		}
	}
}
