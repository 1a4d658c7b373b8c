package dav_test

import (
	"context"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/apps/calendar/caldav"
	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
	"github.com/nymote/nymote/store"
)

// A git push into a DAV store is checked as a PUT would be: a malformed
// vCard or iCalendar object, or one off its shard, is refused with its
// path and what is wrong, and the store is unchanged; a valid one goes in.
func TestPushValidatesObjects(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed (make test-deps installs it)")
	}
	card := "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-1\r\nFN:Carol\r\nEND:VCARD\r\n"
	event := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:ev-1\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260101T100000Z\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	for _, kc := range []struct {
		kind        dav.Kind
		good, bad   string
		badWhy      string
		collType    string
		objectName  string
		editedValid string
	}{
		{carddav.New(0), card, strings.Replace(card, "FN:Carol\r\n", "", 1), "no FN", dav.TypeAddressBook, "card-1.vcf",
			strings.Replace(card, "Carol", "Carol Example", 1)},
		{caldav.New(0), event, strings.Replace(event, "UID:ev-1\r\n", "", 1), "no UID", dav.TypeCalendar, "ev-1.ics",
			strings.Replace(event, "SUMMARY:x", "SUMMARY:y", 1)},
	} {
		t.Run(kc.kind.Name(), func(t *testing.T) {
			ctx := context.Background()
			st, err := store.Init(filepath.Join(t.TempDir(), "store.git"), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			st.SetValidateFunc(kc.kind.Name()+"/", dav.ValidateFunc(kc.kind, 0))
			if err := st.AddUser(ctx, "alice", "alice-password", store.GitWrite); err != nil {
				t.Fatal(err)
			}
			dir := kc.kind.Name() + "/alice/c/work"
			obj := dir + "/o/" + store.Shard(kc.objectName)
			_, err = st.Update(ctx, store.CommitOptions{Message: "seed"}, func(tx *store.Tx) error {
				if err := tx.Put(dir+"/props.json", []byte(`{"type":"`+kc.collType+`","created":"2026-01-01T00:00:00Z"}`)); err != nil {
					return err
				}
				return tx.Put(obj, []byte(kc.good))
			})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(st.GitHandler(nil))
			defer srv.Close()
			u, _ := url.Parse(srv.URL)
			u.User = url.UserPassword("alice", "alice-password")
			work := t.TempDir()
			clone := filepath.Join(work, "clone")
			git(t, work, nil, "clone", "--quiet", u.String(), clone)
			git(t, clone, nil, "config", "user.name", "Alice")
			git(t, clone, nil, "config", "user.email", "alice@example.org")

			for _, tc := range []struct {
				name, path, content, want string
			}{
				{"malformed object", obj, kc.bad, obj + " (commit "},
				{"object off its shard", dir + "/o/00/00/" + kc.objectName, kc.good, "not at the shard of its name"},
				{"collection record not JSON", dir + "/props.json", "{", "props.json"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					git(t, clone, nil, "reset", "--quiet", "--hard", "origin/main")
					p := filepath.Join(clone, filepath.FromSlash(tc.path))
					os.MkdirAll(filepath.Dir(p), 0o755)
					os.WriteFile(p, []byte(tc.content), 0o644)
					git(t, clone, nil, "add", "-A")
					git(t, clone, nil, "commit", "--quiet", "-m", tc.name)
					before, _ := st.BranchHead("")
					var out string
					git(t, clone, &out, "push", "origin", "HEAD:main")
					if !strings.Contains(out, "[remote rejected]") || !strings.Contains(out, tc.want) {
						t.Errorf("push of %s: %s\nwant it refused, saying %q", tc.name, out, tc.want)
					}
					if tc.name == "malformed object" && !strings.Contains(out, kc.badWhy) {
						t.Errorf("the refusal does not say %q: %s", kc.badWhy, out)
					}
					if after, _ := st.BranchHead(""); after != before {
						t.Errorf("the refused push moved main from %s to %s", before, after)
					}
				})
			}
			git(t, clone, nil, "reset", "--quiet", "--hard", "origin/main")
			os.WriteFile(filepath.Join(clone, filepath.FromSlash(obj)), []byte(kc.editedValid), 0o644)
			git(t, clone, nil, "commit", "--quiet", "-am", "a valid edit")
			git(t, clone, nil, "push", "--quiet", "origin", "HEAD:main")
			if b, err := st.Read("", obj); err != nil || string(b) != kc.editedValid {
				t.Errorf("after a valid push: %q, %v", b, err)
			}
		})
	}
}

// git runs stock git in dir; with out set it stores the output and
// tolerates a failure (the caller checks the output).
func git(t *testing.T, dir string, out *string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	b, err := cmd.CombinedOutput()
	if out != nil {
		*out = string(b)
		return
	}
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

// Everything a DAV server writes passes its ValidateFunc: a clone pushed
// back with the server's own writes in it is accepted.
func TestValidateAcceptsWhatTheServerWrites(t *testing.T) {
	card := "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-1\r\nFN:Carol\r\nEND:VCARD\r\n"
	kind := carddav.New(0)
	s := davtest.Start(t, kind)
	for _, r := range []struct{ method, path, body string }{
		{"MKCOL", "/alice/work/", ""},
		{"MKCOL", "/alice/plain/", ""},
		{"MKCOL", "/alice/plain/inner/", ""},
		{"PUT", "/alice/work/card-1.vcf", card},
		{"PUT", "/alice/plain/inner/note.txt", "a note"},
		{"PROPPATCH", "/alice/work/card-1.vcf", `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:x"><d:set><d:prop><x:tag>t</x:tag></d:prop></d:set></d:propertyupdate>`},
		{"PROPPATCH", "/alice/work/", `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>Work</d:displayname></d:prop></d:set></d:propertyupdate>`},
	} {
		if resp := s.Do("alice", r.method, r.path, r.body, "Content-Type", "text/vcard"); resp.Status >= 300 && resp.Status != 207 {
			t.Fatalf("%s %s: %d %s", r.method, r.path, resp.Status, resp.Body)
		}
	}
	items, err := s.Store.List("", kind.Name())
	if err != nil || len(items) < 5 {
		t.Fatalf("listing %s/: %d items, %v", kind.Name(), len(items), err)
	}
	validate := dav.ValidateFunc(kind, 0)
	sn, err := s.Store.Snapshot("")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range items {
		data, err := s.Store.Read("", e.Path)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(e.Path, data, sn.Read); err != nil {
			t.Errorf("ValidateFunc(%s) = %v", e.Path, err)
		}
	}
}
