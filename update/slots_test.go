package update

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

var errPowerCut = errors.New("power cut")

// bootedVersion boots the slots as a launcher would after a power cut (a
// fresh Slots on the same folder) and returns the booted image's version,
// checking that the image is whole.
func bootedVersion(t *testing.T, dir string) (string, Boot) {
	t.Helper()
	s, err := OpenSlots(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Boot()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkUnsigned(b.Dir); err != nil {
		t.Fatalf("booting slot %s: the image there is not whole: %v", b.Slot, err)
	}
	mb, err := os.ReadFile(filepath.Join(b.Dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := ParseManifest(mb)
	return m.AppVersion, b
}

// installed returns slots holding v1 (signed by s), committed.
func installed(t *testing.T, s *Signer) *Slots {
	t.Helper()
	sl, err := OpenSlots(filepath.Join(t.TempDir(), "data.img.slots"))
	if err != nil {
		t.Fatal(err)
	}
	slot, err := sl.Install(fakeImage(t, "v1", s), InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if slot != SlotA {
		t.Fatalf("first image in slot %s, want a", slot)
	}
	return sl
}

func TestSlotsUpdateCommit(t *testing.T) {
	_, s := newKey(t, "k")
	sl := installed(t, s)
	if v, b := bootedVersion(t, sl.Dir); v != "v1" || b.Test {
		t.Fatalf("boot after the first install: %s (test %v), want v1 committed", v, b.Test)
	}
	slot, err := sl.Install(fakeImage(t, "v2", s), InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if slot != SlotB {
		t.Fatalf("update in slot %s, want b", slot)
	}
	v, b := bootedVersion(t, sl.Dir)
	if v != "v2" || !b.Test {
		t.Fatalf("boot after the update: %s (test %v), want v2's test boot", v, b.Test)
	}
	if err := sl.Commit(b.Slot); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if v, b := bootedVersion(t, sl.Dir); v != "v2" || b.Test {
			t.Fatalf("boot %d after the commit: %s (test %v), want v2", i+1, v, b.Test)
		}
	}
	// The next update goes to slot a, the inactive one now.
	if slot, err := sl.Install(fakeImage(t, "v3", s), InstallOptions{}); err != nil || slot != SlotA {
		t.Fatalf("third image: slot %s, %v; want slot a", slot, err)
	}
	_, infos, err := sl.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !infos[1].Committed || !infos[0].Next || infos[0].Tried {
		t.Errorf("status %+v: want b committed, a next and untried", infos)
	}
}

func TestSlotsRollbackOnFailedTestBoot(t *testing.T) {
	_, s := newKey(t, "k")
	sl := installed(t, s)
	if _, err := sl.Install(fakeImage(t, "v2-broken", s), InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if v, b := bootedVersion(t, sl.Dir); v != "v2-broken" || !b.Test {
		t.Fatalf("got %s (test %v), want v2-broken's test boot", v, b.Test)
	}
	// The test boot ends without a commit (the service exited; the
	// launcher saw no good line): the next boot returns to v1.
	v, b := bootedVersion(t, sl.Dir)
	if v != "v1" || b.Test || b.RolledBack != SlotB {
		t.Fatalf("boot after a failed test boot: %s (test %v, rolled back %q), want v1 rolled back from b", v, b.Test, b.RolledBack)
	}
	st, _ := sl.State()
	if st.RolledBack == nil || st.RolledBack.Slot != SlotB {
		t.Errorf("state %+v records no rollback from b", st)
	}
	if err := sl.Commit(SlotB); err == nil {
		t.Error("a late commit of the rolled-back slot succeeded")
	}
	if v, _ := bootedVersion(t, sl.Dir); v != "v1" {
		t.Errorf("boot after the late commit: %s, want v1", v)
	}
}

// TestSlotsPowerCut cuts the power at every stage of an update (stopping
// the install there, then booting from the folder as it is) and checks
// that the appliance always boots one of its two images, whole: the old
// one until the new one is pending, the new one's test boot once, and the
// new one for good only after its commit.
func TestSlotsPowerCut(t *testing.T) {
	_, s := newKey(t, "k")
	installStages := []Stage{StageVerified, StageCleared, StageCopying, StageWritten, StagePending}
	for _, cut := range installStages {
		t.Run(string(cut), func(t *testing.T) {
			sl := installed(t, s)
			// An earlier pending update, to show a cut cancels it cleanly.
			if _, err := sl.Install(fakeImage(t, "v2", s), InstallOptions{}); err != nil {
				t.Fatal(err)
			}
			_, err := sl.Install(fakeImage(t, "v3", s), InstallOptions{Hook: func(st Stage) error {
				if st == cut {
					return errPowerCut
				}
				return nil
			}})
			if cut != StagePending && !errors.Is(err, errPowerCut) {
				t.Fatalf("install: %v, want the cut", err)
			}
			v, b := bootedVersion(t, sl.Dir)
			switch cut {
			case StageVerified:
				// Nothing written: v2 is still pending.
				if v != "v2" || !b.Test {
					t.Fatalf("boot: %s (test %v), want v2's test boot", v, b.Test)
				}
			case StagePending:
				if v != "v3" || !b.Test {
					t.Fatalf("boot: %s (test %v), want v3's test boot", v, b.Test)
				}
			default:
				if v != "v1" || b.Test {
					t.Fatalf("boot: %s (test %v), want v1", v, b.Test)
				}
			}
		})
	}
	t.Run(string(StageTestBoot), func(t *testing.T) {
		sl := installed(t, s)
		sl.Install(fakeImage(t, "v2", s), InstallOptions{})
		if v, b := bootedVersion(t, sl.Dir); v != "v2" || !b.Test {
			t.Fatalf("boot: %s, want v2's test boot", v)
		}
		// Cut during the test boot: no commit.
		if v, _ := bootedVersion(t, sl.Dir); v != "v1" {
			t.Fatalf("boot after a cut during the test boot: %s, want v1", v)
		}
	})
	t.Run(string(StageCommitted), func(t *testing.T) {
		sl := installed(t, s)
		sl.Install(fakeImage(t, "v2", s), InstallOptions{})
		_, b := bootedVersion(t, sl.Dir)
		if err := sl.Commit(b.Slot); err != nil {
			t.Fatal(err)
		}
		if v, b := bootedVersion(t, sl.Dir); v != "v2" || b.Test {
			t.Fatalf("boot after a cut after the commit: %s (test %v), want v2", v, b.Test)
		}
	})
}

func TestSlotsRefuseBeforeWriting(t *testing.T) {
	_, s := newKey(t, "k")
	_, other := newKey(t, "other")
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
		want error
	}{
		{"another key", func(t *testing.T) string { return fakeImage(t, "v2", other) }, ErrUntrusted},
		{"unsigned", func(t *testing.T) string { return fakeImage(t, "v2", nil) }, ErrUnsigned},
		{"tampered", func(t *testing.T) string {
			d := fakeImage(t, "v2", s)
			os.WriteFile(filepath.Join(d, "initrd.cpio.zst"), []byte("evil"), 0o644)
			return d
		}, ErrTampered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sl := installed(t, s)
			before, _ := os.ReadFile(filepath.Join(sl.Dir, StateFile))
			wrote := false
			_, err := sl.Install(tc.dir(t), InstallOptions{Hook: func(Stage) error { wrote = true; return nil }})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			after, _ := os.ReadFile(filepath.Join(sl.Dir, StateFile))
			if wrote || string(before) != string(after) {
				t.Error("the refused image got past verification or changed the state")
			}
			if _, err := os.Stat(sl.SlotDir(SlotB)); !os.IsNotExist(err) {
				t.Errorf("slot b exists after a refused install (%v)", err)
			}
		})
	}
	t.Run("unsigned committed image", func(t *testing.T) {
		sl, _ := OpenSlots(filepath.Join(t.TempDir(), "slots"))
		if _, err := sl.Install(fakeImage(t, "v1", nil), InstallOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := sl.Install(fakeImage(t, "v2", nil), InstallOptions{}); err == nil {
			t.Error("an unsigned update of an unsigned image was accepted without AllowUnsigned")
		}
		if _, err := sl.Install(fakeImage(t, "v2", nil), InstallOptions{AllowUnsigned: true}); err != nil {
			t.Errorf("AllowUnsigned: %v", err)
		}
	})
}

func TestSlotsRollbackByHand(t *testing.T) {
	_, s := newKey(t, "k")
	sl := installed(t, s)
	if _, err := sl.RollbackByHand(); err == nil {
		t.Error("rollback with one image only succeeded")
	}
	sl.Install(fakeImage(t, "v2", s), InstallOptions{})
	// Pending: the rollback cancels it.
	if slot, err := sl.RollbackByHand(); err != nil || slot != SlotA {
		t.Fatalf("rollback of a pending update: %s, %v", slot, err)
	}
	if v, _ := bootedVersion(t, sl.Dir); v != "v1" {
		t.Fatalf("boot: %s, want v1", v)
	}
	sl.Install(fakeImage(t, "v2", s), InstallOptions{})
	_, b := bootedVersion(t, sl.Dir)
	sl.Commit(b.Slot)
	// Committed: the rollback returns to the previous image.
	if slot, err := sl.RollbackByHand(); err != nil || slot != SlotA {
		t.Fatalf("rollback of a committed update: %s, %v", slot, err)
	}
	if v, _ := bootedVersion(t, sl.Dir); v != "v1" {
		t.Fatalf("boot after the rollback: %s, want v1", v)
	}
}

func TestSlotsGiven(t *testing.T) {
	_, s := newKey(t, "k")
	v1 := fakeImage(t, "v1", s)
	sl, _ := OpenSlots(filepath.Join(t.TempDir(), "slots"))
	if slot, err := sl.Given(v1, InstallOptions{}); err != nil || slot != SlotA {
		t.Fatalf("v1 into empty slots: %q, %v", slot, err)
	}
	// Updates received since: v2 committed, then v3 in slot a, pending.
	sl.Install(fakeImage(t, "v2", s), InstallOptions{})
	_, b := bootedVersion(t, sl.Dir)
	sl.Commit(b.Slot)
	sl.Install(fakeImage(t, "v3", s), InstallOptions{})
	// Started again with the configuration's v1: nothing installed.
	if slot, err := sl.Given(v1, InstallOptions{}); err != nil || slot != "" {
		t.Fatalf("v1 given again: %q, %v; want nothing installed", slot, err)
	}
	if v, b := bootedVersion(t, sl.Dir); v != "v3" || !b.Test {
		t.Errorf("boot: %s (test %v), want v3's test boot", v, b.Test)
	}
	// A configuration naming another image installs it once.
	v4 := fakeImage(t, "v4", s)
	if slot, err := sl.Given(v4, InstallOptions{}); err != nil || slot == "" {
		t.Fatalf("v4 given: %q, %v", slot, err)
	}
	if slot, _ := sl.Given(v4, InstallOptions{}); slot != "" {
		t.Error("v4 given twice was installed twice")
	}
}
