package update

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/appliance/app"
)

// format2 writes format 2, reads format 1 and migrates from it.
var format2 = app.DataFormat{Version: 2, Reads: []int{1}, Migrations: []app.Migration{{From: 1, Name: "split-greeting"}}}

func TestCheckFormat(t *testing.T) {
	for _, c := range []struct {
		disk int
		img  *app.DataFormat
		want error
	}{
		{0, &format2, nil},
		{1, nil, nil},
		{1, &format2, nil},
		{2, &format2, nil},
		{2, nil, ErrOlderFormat},
		{3, &format2, ErrOlderFormat},
		// Newer, but cannot serve format 1 during its test boot.
		{1, &app.DataFormat{Version: 2, Migrations: format2.Migrations}, ErrUnreadableFormat},
		// Newer, reads format 1, but no way from 1 to 3.
		{1, &app.DataFormat{Version: 3, Reads: []int{1, 2}, Migrations: []app.Migration{{From: 2, Name: "x"}}}, ErrUnreadableFormat},
	} {
		err := CheckFormat(c.disk, c.img, "hello v9")
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("CheckFormat(%d, %+v) = %v, want %v", c.disk, c.img, err, c.want)
		}
		if errors.Is(err, ErrOlderFormat) {
			cur := 1
			if c.img != nil {
				cur = c.img.Current()
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("data format %d", cur)) || !strings.Contains(err.Error(), fmt.Sprintf("format %d", c.disk)) || !strings.Contains(err.Error(), "hello v9") {
				t.Errorf("the refusal does not name both formats and the image: %v", err)
			}
		}
	}
}

func TestDiskFormatRecord(t *testing.T) {
	dir := t.TempDir()
	if f, err := ReadDiskFormat(dir); err != nil || !f.Fresh {
		t.Fatalf("empty folder: %+v, %v; want fresh", f, err)
	}
	os.Mkdir(filepath.Join(dir, "lost+found"), 0o700)
	if f, err := ReadDiskFormat(dir); err != nil || !f.Fresh {
		t.Fatalf("folder with lost+found: %+v, %v; want fresh", f, err)
	}
	os.Mkdir(filepath.Join(dir, "store.git"), 0o700)
	if f, err := ReadDiskFormat(dir); err != nil || f.Format != 1 || !f.Implicit {
		t.Fatalf("folder with data and no record: %+v, %v; want format 1", f, err)
	}
	if err := WriteDiskFormat(dir, DiskFormat{Format: 3}); err != nil {
		t.Fatal(err)
	}
	if f, err := ReadDiskFormat(dir); err != nil || f.Format != 3 || f.Implicit || f.Migrating != nil {
		t.Fatalf("after writing format 3: %+v, %v", f, err)
	}
	fi, err := os.Stat(filepath.Join(dir, DataFormatFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("record: %v, %v; want mode 0600", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node", "."+filepath.Base(DataFormatFile)+".tmp")); err == nil {
		t.Error("the temporary file is left")
	}
	os.WriteFile(filepath.Join(dir, DataFormatFile), []byte(`{"format":0}`), 0o600)
	if _, err := ReadDiskFormat(dir); err == nil || !strings.Contains(err.Error(), DataFormatFile) {
		t.Errorf("a bad record: %v, want an error naming it", err)
	}
}

// TestMigrateResume crashes a migration in its middle (its step fails, as
// a power cut would stop it) and checks that the record names the step
// and that the next Migrate runs it again and goes on.
func TestMigrateResume(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "greeting"), []byte("hello world"), 0o644)
	if err := WriteDiskFormat(dir, DiskFormat{Format: 1}); err != nil {
		t.Fatal(err)
	}
	f := app.DataFormat{Version: 3, Migrations: []app.Migration{{From: 1, Name: "split-greeting"}, {From: 2, Name: "count-words"}}}
	crash := true
	runs := map[string]int{}
	funcs := map[string]MigrationFunc{
		// Idempotent: splits what is still one line.
		"split-greeting": func(ctx context.Context, d string) error {
			runs["split-greeting"]++
			p := filepath.Join(d, "greeting")
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), " ", "\n")), 0o644); err != nil {
				return err
			}
			return nil
		},
		"count-words": func(ctx context.Context, d string) error {
			runs["count-words"]++
			b, err := os.ReadFile(filepath.Join(d, "greeting"))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(d, "words"), []byte(fmt.Sprint(len(strings.Fields(string(b))))), 0o644); err != nil {
				return err
			}
			if crash {
				return errors.New("power cut")
			}
			return nil
		},
	}
	var log []string
	say := func(format string, args ...any) { log = append(log, fmt.Sprintf(format, args...)) }
	done, err := Migrate(context.Background(), dir, f, funcs, say)
	if err == nil || !strings.Contains(err.Error(), "count-words") || len(done) != 1 || done[0].Name != "split-greeting" {
		t.Fatalf("Migrate with a crash in count-words: %v, done %v", err, done)
	}
	rec, err := ReadDiskFormat(dir)
	if err != nil || rec.Format != 2 || rec.Migrating == nil || rec.Migrating.Name != "count-words" {
		t.Fatalf("record after the crash: %+v, %v; want format 2, migrating count-words", rec, err)
	}
	crash = false
	log = nil
	done, err = Migrate(context.Background(), dir, f, funcs, say)
	if err != nil || len(done) != 1 || done[0].Name != "count-words" {
		t.Fatalf("Migrate again: %v, done %v", err, done)
	}
	if rec, err := ReadDiskFormat(dir); err != nil || rec.Format != 3 || rec.Migrating != nil {
		t.Fatalf("record after the migration: %+v, %v", rec, err)
	}
	if runs["split-greeting"] != 1 || runs["count-words"] != 2 {
		t.Errorf("runs %v: want split-greeting once, count-words twice", runs)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "words")); string(b) != "2" {
		t.Errorf("words = %q", b)
	}
	joined := strings.Join(log, "\n")
	for _, want := range []string{"count-words (format 2 to 3) was interrupted", "data migration count-words: format 2 to 3", "count-words done: the data is in format 3"} {
		if !strings.Contains(joined, want) {
			t.Errorf("log lacks %q:\n%s", want, joined)
		}
	}
	// At the format: nothing to do.
	if done, err := Migrate(context.Background(), dir, f, funcs, say); err != nil || len(done) != 0 {
		t.Errorf("Migrate at format 3: %v, %v", done, err)
	}
	// A declared step without code: refused before anything runs.
	os.WriteFile(filepath.Join(dir, DataFormatFile), []byte(`{"format":1}`), 0o600)
	if _, err := Migrate(context.Background(), dir, f, map[string]MigrationFunc{"split-greeting": funcs["split-greeting"]}, say); err == nil || !strings.Contains(err.Error(), "count-words") {
		t.Errorf("Migrate without count-words' code: %v", err)
	}
	if runs["split-greeting"] != 1 {
		t.Error("a step ran before the missing code was found")
	}
}

// TestReceiverRefusesFormat: an image of an older data format than the
// disk's, or one that cannot read it, is refused with 409 before the sink
// is called (or, streaming, opened).
func TestReceiverRefusesFormat(t *testing.T) {
	for _, mode := range []string{"stream", "sink"} {
		t.Run(mode, func(t *testing.T) { testReceiverRefusesFormat(t, mode == "stream") })
	}
}

func testReceiverRefusesFormat(t *testing.T, stream bool) {
	_, s := newKey(t, "k")
	disk := 2
	var sunk []string
	rc := &Receiver{
		Trusted:    []ed25519.PublicKey{s.Public()},
		Authorize:  BasicAuth(func(u, p string) error { return nil }),
		Sink:       func(im *Image) error { sunk = append(sunk, im.Parsed.AppVersion); return nil },
		DiskFormat: func() (int, error) { return disk, nil },
	}
	if stream {
		rc.Stream = func(im *Image) (BundleSink, error) {
			sunk = append(sunk, im.Parsed.AppVersion)
			return OpenUpdateDisk(filepath.Join(t.TempDir(), "none")) // never reached by a refused image
		}
	}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	code, body := send(t, srv.URL, fakeImage(t, "v1", s), "admin", "x")
	if code != http.StatusConflict || !strings.Contains(body, "data format 1") || !strings.Contains(body, "format 2") {
		t.Errorf("an image of format 1 on a format 2 disk: %d %q, want 409 naming both formats", code, body)
	}
	disk = 1
	code, body = send(t, srv.URL, fakeImageFormat(t, "v3", s, &app.DataFormat{Version: 2, Migrations: format2.Migrations}), "admin", "x")
	if code != http.StatusConflict || !strings.Contains(body, "cannot serve format 1") {
		t.Errorf("an image that cannot read format 1: %d %q, want 409", code, body)
	}
	if len(sunk) != 0 {
		t.Errorf("refused images reached the sink: %v", sunk)
	}
	if stream {
		// The next image passes the format check: the sink is opened
		// (here it fails, as a missing update disk would: 500).
		if code, body := send(t, srv.URL, fakeImageFormat(t, "v2", s, &format2), "admin", "x"); code != http.StatusInternalServerError || len(sunk) != 1 {
			t.Errorf("an image of format 2 reading format 1, no update disk: %d %q (sink opened for %v), want 500 after opening", code, body, sunk)
		}
		return
	}
	if code, body := send(t, srv.URL, fakeImageFormat(t, "v2", s, &format2), "admin", "x"); code != http.StatusAccepted {
		t.Errorf("an image of format 2 reading format 1: %d %q, want 202", code, body)
	}
}

// TestSlotsFormatChecks: a rollback by hand to an image of an older format
// than the disk's, and an install of one, are refused before anything is
// written.
func TestSlotsFormatChecks(t *testing.T) {
	_, s := newKey(t, "k")
	sl := installed(t, s) // v1: format 1 (no data_format)
	if _, err := sl.Install(fakeImageFormat(t, "v2", s, &format2), InstallOptions{DiskFormat: 1}); err != nil {
		t.Fatal(err)
	}
	if _, b := bootedVersion(t, sl.Dir); !b.Test {
		t.Fatal("v2 not test-booted")
	}
	if err := sl.Commit(SlotB); err != nil {
		t.Fatal(err)
	}
	// v2 committed, and (at its next boot) it migrated the disk to 2.
	before, _ := os.ReadFile(filepath.Join(sl.Dir, StateFile))
	err := sl.CheckRollback(2)
	if !errors.Is(err, ErrOlderFormat) || !strings.Contains(err.Error(), "slot a's image (hello v1") || !strings.Contains(err.Error(), "data format 1") || !strings.Contains(err.Error(), "format 2") {
		t.Errorf("CheckRollback(2): %v, want a refusal naming v1 and both formats", err)
	}
	if _, err := sl.Install(fakeImage(t, "v1b", s), InstallOptions{DiskFormat: 2}); !errors.Is(err, ErrOlderFormat) {
		t.Errorf("install of a format 1 image on a format 2 disk: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(sl.Dir, StateFile)); string(after) != string(before) {
		t.Errorf("state changed by refusals:\n%s\nwas:\n%s", after, before)
	}
	if _, err := os.Stat(filepath.Join(sl.Dir, ".a.new")); err == nil {
		t.Error("the refused install wrote into the slots")
	}
	// Before the migration (disk still 1) the rollback is allowed.
	if err := sl.CheckRollback(1); err != nil {
		t.Errorf("CheckRollback(1): %v", err)
	}
	_, infos, _ := sl.Status()
	if infos[0].DataFormat != 1 || infos[1].DataFormat != 2 {
		t.Errorf("status formats %d, %d; want 1, 2", infos[0].DataFormat, infos[1].DataFormat)
	}
}

// TestDiskFormatOf reads the record from an ext4 disk image, as the host
// does before a rollback.
func TestDiskFormatOf(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		if _, serr := os.Stat("/sbin/mkfs.ext4"); serr != nil {
			t.Skip("mkfs.ext4 (e2fsprogs) not installed")
		}
		mkfs = "/sbin/mkfs.ext4"
	}
	mk := func(root string) string {
		img := filepath.Join(t.TempDir(), "data.img")
		if out, err := exec.Command(mkfs, "-q", "-F", "-d", root, img, "8M").CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v: %s", err, out)
		}
		return img
	}
	empty := t.TempDir()
	if f, err := DiskFormatOf(mk(empty)); err != nil || !f.Fresh {
		t.Errorf("fresh disk: %+v, %v", f, err)
	}
	old := t.TempDir()
	os.Mkdir(filepath.Join(old, "store.git"), 0o700)
	if f, err := DiskFormatOf(mk(old)); err != nil || f.Format != 1 || !f.Implicit {
		t.Errorf("disk without a record: %+v, %v", f, err)
	}
	rec := t.TempDir()
	if err := WriteDiskFormat(rec, DiskFormat{Format: 4}); err != nil {
		t.Fatal(err)
	}
	if f, err := DiskFormatOf(mk(rec)); err != nil || f.Format != 4 {
		t.Errorf("disk with format 4: %+v, %v", f, err)
	}
}
