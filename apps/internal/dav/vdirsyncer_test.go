package dav_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/apps/calendar/caldav"
	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
)

// vdirsyncerCase is one kind for the vdirsyncer round trip.
type vdirsyncerCase struct {
	name, storage, ext, ctype string
	kind                      dav.Kind
	item                      func(uid, text string) string
}

func vevent(uid, text string) string {
	return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:" + uid +
		"\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T090000Z\r\nDTEND:20260105T100000Z\r\nSUMMARY:" + text + "\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
}

// TestVdirsyncer syncs an address book and a calendar to local folders and
// back with vdirsyncer (Debian package vdirsyncer): create, edit and delete
// on both sides, then a conflict.
func TestVdirsyncer(t *testing.T) {
	bin, err := exec.LookPath("vdirsyncer")
	if err != nil {
		t.Skip("vdirsyncer is not installed (apt-get install -y vdirsyncer)")
	}
	for _, tc := range []vdirsyncerCase{
		{"carddav", "carddav", ".vcf", "text/vcard", carddav.New(0), vcf},
		{"caldav", "caldav", ".ics", "text/calendar", caldav.New(0), vevent},
	} {
		t.Run(tc.name, func(t *testing.T) { testVdirsyncer(t, bin, tc) })
	}
}

func testVdirsyncer(t *testing.T, bin string, tc vdirsyncerCase) {
	s := davtest.Start(t, tc.kind)
	dir := t.TempDir()
	local := filepath.Join(dir, "local")
	conf := func(resolution string) string {
		return davtest.VdirsyncerConfig(t, dir, tc.storage, s.URL+"/", tc.ext, davtest.Users["alice"], resolution)
	}
	cfg := conf("")
	run := func(wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"-c", cfg}, args...)...)
		cmd.Stdin = strings.NewReader(strings.Repeat("y\n", 10))
		cmd.Env = append(os.Environ(), "HOME="+dir, "LC_ALL=C.UTF-8", "LANG=C.UTF-8")
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("vdirsyncer %v: %v (want success %v)\n%s", args, err, wantOK, out)
		}
		return string(out)
	}
	put := func(name, body string) {
		t.Helper()
		if r := s.Do("alice", "PUT", "/alice/default/"+name, body, "Content-Type", tc.ctype); r.Status >= 300 {
			t.Fatalf("PUT %s: %d %s", name, r.Status, r.Body)
		}
	}
	put("one"+tc.ext, tc.item("one", "first"))
	put("two"+tc.ext, tc.item("two", "second"))
	run(true, "discover", "p")
	run(true, "sync")
	ldir := filepath.Join(local, "default")
	files := func() map[string]string {
		ents, err := os.ReadDir(ldir)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(ldir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m[e.Name()] = string(b)
		}
		return m
	}
	if f := files(); len(f) != 2 || !strings.Contains(f["one"+tc.ext], "first") {
		t.Fatalf("after the first sync, local files: %v", f)
	}
	// Local side: create one, edit one.
	os.WriteFile(filepath.Join(ldir, "three"+tc.ext), []byte(tc.item("three", "third")), 0o644)
	os.WriteFile(filepath.Join(ldir, "one"+tc.ext), []byte(tc.item("one", "first, edited locally")), 0o644)
	run(true, "sync")
	if r := s.Do("alice", "GET", "/alice/default/one"+tc.ext, ""); !strings.Contains(r.Body, "edited locally") {
		t.Errorf("local edit did not reach the server: %d %s", r.Status, r.Body)
	}
	if r := s.Do("alice", "REPORT", "/alice/default/", syncReport("")); strings.Count(r.Body, "<d:response>") != 3 {
		t.Errorf("server after the local create: %s", r.Body)
	}
	// Server side: edit one, delete one.
	put("two"+tc.ext, tc.item("two", "second, edited on the server"))
	if r := s.Do("alice", "DELETE", "/alice/default/one"+tc.ext, ""); r.Status != 204 {
		t.Fatalf("DELETE: %d", r.Status)
	}
	run(true, "sync")
	f := files()
	if _, ok := f["one"+tc.ext]; ok || len(f) != 2 || !strings.Contains(f["two"+tc.ext], "edited on the server") {
		t.Errorf("server edit and delete did not reach the local side: %v", f)
	}
	// Local delete.
	os.Remove(filepath.Join(ldir, "three"+tc.ext))
	run(true, "sync")
	if r := s.Do("alice", "GET", "/alice/default/three"+tc.ext, ""); r.Status != 404 {
		t.Errorf("local delete did not reach the server: GET gave %d", r.Status)
	}
	// A conflict: both sides edit the same item.
	os.WriteFile(filepath.Join(ldir, "two"+tc.ext), []byte(tc.item("two", "local side of the conflict")), 0o644)
	put("two"+tc.ext, tc.item("two", "server side of the conflict"))
	if out := run(false, "sync"); !strings.Contains(strings.ToLower(out), "conflict") {
		t.Errorf("conflict not reported:\n%s", out)
	}
	cfg = conf(`conflict_resolution = "b wins"`)
	run(true, "sync")
	if f := files(); !strings.Contains(f["two"+tc.ext], "server side") {
		t.Errorf("after resolving the conflict: %v", f)
	}
}
