package store

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzValidatePath: ValidatePath never panics, and what it accepts is a
// path a Tx can write and read back.
//
// make test runs it for 8000 inputs past its seeds (fuzz-short: 8000x).
func FuzzValidatePath(f *testing.F) {
	for _, p := range []string{"a", "a/b", "", "/a", "a/", "a//b", ".git", "a/.GIT/b", "..", "a/./b", "\x00", "\xff", strings.Repeat("x", 256)} {
		f.Add(p)
	}
	s := newStore(f)
	f.Fuzz(func(t *testing.T, p string) {
		err := ValidatePath(p)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("ValidatePath(%q) = %v, not ErrInvalidPath", p, err)
			}
			return
		}
		if !utf8.ValidString(p) || strings.HasPrefix(p, "/") || strings.Contains(p, "//") {
			t.Fatalf("ValidatePath accepted %q", p)
		}
		_, err = s.Update(context.Background(), CommitOptions{}, func(tx *Tx) error {
			if err := tx.Put(p, []byte("x")); err != nil {
				return err
			}
			b, err := tx.Get(p)
			if err != nil || string(b) != "x" {
				t.Fatalf("Get(%q) = %q, %v", p, b, err)
			}
			return errors.New("roll back")
		})
		if err == nil || err.Error() != "roll back" {
			t.Fatalf("Update with %q: %v", p, err)
		}
	})
}

// FuzzReceivePack posts fuzzed receive-pack and upload-pack bodies to the
// git endpoint: it never panics, and a body that is not a valid push
// leaves the branches where they were.
//
// make test runs it for 600 inputs past its seeds (fuzz-short: 600x).
func FuzzReceivePack(f *testing.F) {
	zero := strings.Repeat("0", 40)
	seed := func(cmds ...string) []byte {
		var b bytes.Buffer
		for i, c := range cmds {
			if i == 0 {
				c += "\x00report-status"
			}
			b.WriteString(pktLine(c + "\n"))
		}
		b.WriteString("0000")
		return b.Bytes()
	}
	f.Add(seed(zero+" "+strings.Repeat("1", 40)+" refs/heads/main"), false)
	f.Add(seed(zero+" "+zero+" refs/heads/x"), false)
	f.Add(append(seed(zero+" "+strings.Repeat("a", 40)+" refs/heads/new"), []byte("PACK\x00\x00\x00\x02\x00\x00\x00\x00")...), false)
	f.Add([]byte("0004"), false)
	f.Add([]byte("ffff"), false)
	f.Add([]byte(pktLine("want "+strings.Repeat("1", 40)+"\n")+"0000"+pktLine("done\n")), true)
	f.Add([]byte(pktLine("have zz\n")+pktLine("done\n")), true)

	s := newStore(f)
	put(f, s, "a", "a")
	if err := s.AddUser(context.Background(), "alice", "alice-password", GitWrite); err != nil {
		f.Fatal(err)
	}
	h := s.GitHandler(nil)
	f.Fuzz(func(t *testing.T, body []byte, upload bool) {
		before, err := s.Branches()
		if err != nil {
			t.Fatal(err)
		}
		service := "git-receive-pack"
		if upload {
			service = "git-upload-pack"
		}
		req := httptest.NewRequest(http.MethodPost, "/"+service, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-"+service+"-request")
		req.SetBasicAuth("alice", "alice-password")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		after, err := s.Branches()
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) || after[0] != before[0] {
			// Only a valid push moves a branch: one whose objects the
			// store holds and that passes validation.
			for _, b := range after {
				if err := s.validateNew(b.Head); err != nil {
					t.Fatalf("branch %s moved to %s, which fails validation: %v", b.Name, b.Head, err)
				}
			}
		}
	})
}
