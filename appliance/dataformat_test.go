package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/store"
	"github.com/nymote/nymote/update"
)

// greetingMigration is the test's migration from format 1 to 2: the store's
// greeting item, one line "NAME: TEXT" in format 1, becomes two items
// (greeting/name, greeting/text), through store.Update with a commit
// message naming the migration. It is idempotent: a store already split
// is left as it is (and store.Update makes no commit then). crashAfter,
// when set, fails after the commit, as a power cut before the format
// record is written would.
func greetingMigration(t *testing.T, crashAfter *bool) update.MigrationFunc {
	return func(ctx context.Context, dir string) error {
		s, err := store.OpenData(dir, store.Options{})
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Update(ctx, store.CommitOptions{Message: "data migration split-greeting: format 1 to 2"}, func(tx *store.Tx) error {
			b, err := tx.Get("greeting")
			if errors.Is(err, store.ErrNotExist) {
				return nil // split already
			}
			if err != nil {
				return err
			}
			name, text, ok := strings.Cut(string(b), ": ")
			if !ok {
				return fmt.Errorf("greeting %q is not in format 1", b)
			}
			if err := tx.Put("greeting/name", []byte(name)); err != nil {
				return err
			}
			if err := tx.Put("greeting/text", []byte(text)); err != nil {
				return err
			}
			return tx.Delete("greeting")
		})
		if err == nil && crashAfter != nil && *crashAfter {
			*crashAfter = false
			return errors.New("power cut")
		}
		return err
	}
}

// TestDataFormatBoots walks a data directory with a real store through
// the runtime's data format check (checkDataFormat, as initMain calls it
// before the service starts) across an update with a migration: v1 (format
// 1) serving; v2 (format 2, reads 1, migration split-greeting) test-booted
// on the data as it is; an image that cannot read format 1 refused on its
// test boot; v2's first boot after its commit migrating (once crashed
// after its commit and resumed); v1 then refused; git fsck clean.
func TestDataFormatBoots(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	var lines []string
	say := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	ctx := context.Background()

	v1 := Service{App: app.App{Name: "hello"}}
	crash := true
	v2 := Service{
		App: app.App{Name: "hello", Data: app.DataFormat{Version: 2, Reads: []int{1},
			Migrations: []app.Migration{{From: 1, Name: "split-greeting"}}}},
		Migrations: map[string]update.MigrationFunc{"split-greeting": greetingMigration(t, &crash)},
	}

	// A fresh disk: v1 records format 1, then its service makes the
	// store and writes in format 1.
	if m, err := checkDataFormat(ctx, dir, v1, false, say); err != nil || m {
		t.Fatalf("v1 on a fresh disk: %v, %v", m, err)
	}
	s, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, store.CommitOptions{Message: "greet"}, func(tx *store.Tx) error {
		return tx.Put("greeting", []byte("world: hello"))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	format := func() update.DiskFormat {
		t.Helper()
		f, err := update.ReadDiskFormat(dir)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if f := format(); f.Format != 1 {
		t.Fatalf("after v1: %+v", f)
	}
	commits := func() []store.CommitInfo {
		t.Helper()
		s, err := store.OpenData(dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		log, err := s.Log(store.LogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return log
	}
	before := len(commits())

	// v2's test boot: the data as it is.
	lines = nil
	m, err := checkDataFormat(ctx, dir, v2, true, say)
	if err != nil || !m {
		t.Fatalf("v2's test boot: migrate after commit %v, %v; want true", m, err)
	}
	if f := format(); f.Format != 1 || f.Migrating != nil || len(commits()) != before {
		t.Fatalf("v2's test boot wrote: %+v, %d commits (was %d)", f, len(commits()), before)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "serving the data as it is, in data format 1") {
		t.Errorf("test boot lines: %q", lines)
	}

	// An image of format 2 that cannot read format 1: its test boot is
	// refused (not good: the slot logic returns to the committed image).
	v2b := v2
	v2b.Data.Reads = nil
	if _, err := checkDataFormat(ctx, dir, v2b, true, say); !errors.Is(err, ErrDataUnreadable) || !strings.Contains(err.Error(), "cannot serve format 1") {
		t.Errorf("an image that cannot read format 1, on its test boot: %v", err)
	}

	// v2 committed: its next boot (no longer a test) migrates; it
	// crashes after the migration's commit, before the record.
	lines = nil
	if _, err := checkDataFormat(ctx, dir, v2, false, say); err == nil || !strings.Contains(err.Error(), "power cut") {
		t.Fatalf("the crashed migration: %v", err)
	}
	if f := format(); f.Format != 1 || f.Migrating == nil || f.Migrating.Name != "split-greeting" {
		t.Fatalf("record after the crash: %+v", f)
	}
	// A test boot of another image now (the interrupted migration is
	// the committed image's to finish) is refused.
	if _, err := checkDataFormat(ctx, dir, v2, true, say); !errors.Is(err, ErrDataUnreadable) || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("a test boot on an interrupted migration: %v", err)
	}
	// The previous image (format 1) would find the data half migrated:
	// it refuses too.
	if _, err := checkDataFormat(ctx, dir, v1, false, say); !errors.Is(err, ErrDataNewer) || !strings.Contains(err.Error(), "split-greeting from data format 1 to 2 was interrupted") {
		t.Errorf("v1 on an interrupted migration: %v", err)
	}
	// The next boot resumes it: the step runs again and, the store
	// already split, commits nothing more.
	lines = nil
	if m, err := checkDataFormat(ctx, dir, v2, false, say); err != nil || m {
		t.Fatalf("the resumed migration: %v, %v", m, err)
	}
	joined := strings.Join(lines, "\n")
	for _, want := range []string{"data format 1 on the data disk, hello writes format 2: migrating",
		"split-greeting (format 1 to 2) was interrupted: running it again",
		"data migration split-greeting: format 1 to 2", "data migration split-greeting done: the data is in format 2"} {
		if !strings.Contains(joined, want) {
			t.Errorf("migration lines lack %q:\n%s", want, joined)
		}
	}
	if f := format(); f.Format != 2 || f.Migrating != nil {
		t.Fatalf("record after the migration: %+v", f)
	}
	log := commits()
	if len(log) != before+1 || log[0].Subject() != "data migration split-greeting: format 1 to 2" {
		t.Errorf("history after the migration: %d commits (was %d), newest %q", len(log), before, log[0].Subject())
	}
	s, err = store.OpenData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"greeting/name": "world", "greeting/text": "hello"} {
		if b, err := s.Read("", p); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	if _, err := s.Read("", "greeting"); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("greeting in format 1 still there: %v", err)
	}
	s.Close()
	if out, err := exec.Command(gitBin, "--git-dir", filepath.Join(dir, store.RepoDir), "fsck", "--strict", "--no-dangling").CombinedOutput(); err != nil {
		t.Errorf("git fsck after the migration: %v\n%s", err, out)
	}

	// v2 again: nothing to do.
	if m, err := checkDataFormat(ctx, dir, v2, false, say); err != nil || m {
		t.Errorf("v2 at format 2: %v, %v", m, err)
	}
	// v1 (a rollback after the committed migration) refuses, naming
	// both formats.
	_, err = checkDataFormat(ctx, dir, v1, false, say)
	if !errors.Is(err, ErrDataNewer) || !strings.Contains(err.Error(), "data format 2") || !strings.Contains(err.Error(), "writes format 1") {
		t.Errorf("v1 on format 2: %v", err)
	}
}

// TestDataFormatDeclarations: a service whose migrations' code and
// declaration differ does not start.
func TestDataFormatDeclarations(t *testing.T) {
	say := func(string, ...any) {}
	noCode := Service{App: app.App{Name: "x", Data: app.DataFormat{Version: 2, Migrations: []app.Migration{{From: 1, Name: "m"}}}}}
	if _, err := checkDataFormat(context.Background(), t.TempDir(), noCode, false, say); err == nil || !strings.Contains(err.Error(), "carries no code") {
		t.Errorf("declared without code: %v", err)
	}
	undeclared := Service{App: app.App{Name: "x"}, Migrations: map[string]update.MigrationFunc{"m": func(context.Context, string) error { return nil }}}
	if _, err := checkDataFormat(context.Background(), t.TempDir(), undeclared, false, say); err == nil || !strings.Contains(err.Error(), "declares 0") {
		t.Errorf("code without declaration: %v", err)
	}
}

// TestRunHostDataFormat runs the data format rule through RunHost, the
// runtime's host mode (no test boots there): v1 writes its store in format
// 1; v2 finds the data migrated when its Serve starts; v1 then refuses to
// start, naming both formats, and its Serve is never called.
func TestRunHostDataFormat(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	ports := []app.Port{{Name: "p"}}
	args := []string{"--data", dir, "--port", "p=0"}
	served := 0
	v1 := Service{App: app.App{Name: "greeter", Ports: ports}, Serve: func(ctx context.Context, env *Env) error {
		served++
		for _, l := range env.Listeners {
			l.Close()
		}
		s, err := store.OpenData(env.DataDir, store.Options{})
		if errors.Is(err, store.ErrNotExist) {
			s, err = store.InitData(env.DataDir, store.Options{})
		}
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Update(ctx, store.CommitOptions{Message: "greet"}, func(tx *store.Tx) error {
			return tx.Put("greeting", []byte("world: hello"))
		})
		return err
	}}
	var name string
	v2 := Service{
		App: app.App{Name: "greeter", Ports: ports, Data: app.DataFormat{Version: 2, Reads: []int{1},
			Migrations: []app.Migration{{From: 1, Name: "split-greeting"}}}},
		Migrations: map[string]update.MigrationFunc{"split-greeting": greetingMigration(t, nil)},
		Serve: func(ctx context.Context, env *Env) error {
			for _, l := range env.Listeners {
				l.Close()
			}
			s, err := store.OpenData(env.DataDir, store.Options{})
			if err != nil {
				return err
			}
			defer s.Close()
			b, err := s.Read("", "greeting/name")
			name = string(b)
			return err
		},
	}
	var errs bytes.Buffer
	if err := RunHost(context.Background(), v1, args, io.Discard, &errs); err != nil {
		t.Fatalf("v1: %v\n%s", err, errs.String())
	}
	if f, err := update.ReadDiskFormat(dir); err != nil || f.Format != 1 {
		t.Fatalf("after v1: %+v, %v", f, err)
	}
	errs.Reset()
	if err := RunHost(context.Background(), v2, args, io.Discard, &errs); err != nil || name != "world" {
		t.Fatalf("v2: %v, greeting/name %q\n%s", err, name, errs.String())
	}
	if !strings.Contains(errs.String(), "data migration split-greeting done: the data is in format 2") {
		t.Errorf("v2's log lacks the migration:\n%s", errs.String())
	}
	err = RunHost(context.Background(), v1, args, io.Discard, io.Discard)
	if !errors.Is(err, ErrDataNewer) || !strings.Contains(err.Error(), "data format 2, greeter writes format 1") || served != 1 {
		t.Errorf("v1 after the migration: %v (served %d times, want 1)", err, served)
	}
	if out, err := exec.Command(gitBin, "--git-dir", filepath.Join(dir, store.RepoDir), "fsck", "--strict", "--no-dangling").CombinedOutput(); err != nil {
		t.Errorf("git fsck: %v\n%s", err, out)
	}
}
