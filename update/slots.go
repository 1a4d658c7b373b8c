package update

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// The two slots of a host-booted appliance.
const (
	SlotA = "a"
	SlotB = "b"
)

// StateFile is the slots' state, in the slots folder.
const StateFile = "state.json"

// State is the slots' state: which slot is committed (known good), which
// one waits for its test boot, and whether that test boot has begun.
//
// The try-once rule: a new image is booted once (Boot sets Tried before
// it boots it); it becomes the committed one only when the appliance
// reports itself good during that boot (Commit). A boot that finds Tried
// set and no commit returns to the committed slot (an automatic rollback).
// Every change is one atomic rename of StateFile, so a power cut at any
// moment leaves either the old state or the new one, and each of them
// boots one of the two images.
type State struct {
	// Committed is the slot that boots when no test is pending; "" while
	// no image has been installed.
	Committed string `json:"committed"`
	// Next is the slot holding a new image that has not been committed.
	Next string `json:"next,omitempty"`
	// Tried is set when Next's test boot has begun.
	Tried bool `json:"tried,omitempty"`
	// RolledBack is the last rollback, for status.
	RolledBack *Rollback `json:"rolled_back,omitempty"`
	// Given is the sha256 of the manifest of the image the launcher's
	// configuration last installed (see Given).
	Given string `json:"given,omitempty"`
}

// Rollback records a return to the committed slot.
type Rollback struct {
	Slot    string    `json:"slot"`    // the slot left
	Version string    `json:"version"` // its image's version
	Why     string    `json:"why"`
	At      time.Time `json:"at"`
}

// Slots is the folder of a host-booted appliance's two image slots (one
// image folder each, SlotA and SlotB) and their StateFile. It usually
// lies beside the data disk (SlotsDir).
type Slots struct {
	Dir string
	// Now is the clock for rollback records; nil means time.Now.
	Now func() time.Time
}

// SlotsDir is the slots folder of a data disk: DISK.slots beside it.
func SlotsDir(disk string) string { return disk + ".slots" }

// OpenSlots opens (creating it if need be) the slots folder dir.
func OpenSlots(dir string) (*Slots, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("update: slots: %w", err)
	}
	return &Slots{Dir: dir}, nil
}

func (s *Slots) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// SlotDir is the image folder of slot.
func (s *Slots) SlotDir(slot string) string { return filepath.Join(s.Dir, slot) }

// Other returns the slot that is not slot.
func Other(slot string) string {
	if slot == SlotA {
		return SlotB
	}
	return SlotA
}

// State reads the state; a folder without one has no image yet.
func (s *Slots) State() (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(s.Dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("update: slots: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("update: slots: %s: %w", filepath.Join(s.Dir, StateFile), err)
	}
	for _, v := range []string{st.Committed, st.Next} {
		if v != "" && v != SlotA && v != SlotB {
			return st, fmt.Errorf("update: slots: %s names slot %q", filepath.Join(s.Dir, StateFile), v)
		}
	}
	if st.Next != "" && st.Next == st.Committed {
		return st, fmt.Errorf("update: slots: %s: slot %s is both committed and next", filepath.Join(s.Dir, StateFile), st.Next)
	}
	return st, nil
}

// setState writes st atomically: a temporary file, synced, renamed over
// StateFile, and the folder synced.
func (s *Slots) setState(st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(s.Dir, StateFile, append(b, '\n'))
}

// writeAtomic replaces dir/name with b so that a power cut leaves the old
// or the new content.
func writeAtomic(dir, name string, b []byte) error {
	return writeAtomicPerm(dir, name, b, 0o644)
}

// writeAtomicPerm is writeAtomic for a file of mode perm (the temporary
// file has it from its creation).
func writeAtomicPerm(dir, name string, b []byte, perm os.FileMode) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	os.Remove(tmp) // a crash's leftover would keep its mode
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("update: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("update: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("update: syncing %s: %w", dir, err)
	}
	return nil
}

// InstallOptions configure Install.
type InstallOptions struct {
	// AllowUnsigned installs an unsigned image next to a running image
	// that trusts no key (one built without --sign). With a running
	// image that trusts keys, the new image must verify against them
	// whatever this says.
	AllowUnsigned bool
	// Hook, for tests, is called at each stage of the install (see
	// Stage); an error stops the install there, as a power cut would.
	Hook func(Stage) error
	// DiskFormat, when not 0, is the data disk's format (DiskFormatOf):
	// an image that cannot serve it (CheckFormat) is refused before
	// anything is written.
	DiskFormat int

	given string // Given's manifest hash, recorded with the install
}

// Stage is a point of an install or a boot where a power cut may fall.
type Stage string

// The stages, in order.
const (
	StageVerified  Stage = "verified"  // the new image checked, nothing written
	StageCleared   Stage = "cleared"   // a pending test cancelled; the inactive slot about to be written
	StageCopying   Stage = "copying"   // part of the new image written to the inactive slot
	StageWritten   Stage = "written"   // the new image written and checked, not yet pending
	StagePending   Stage = "pending"   // the new image waits for its test boot
	StageTestBoot  Stage = "test-boot" // its test boot has begun
	StageCommitted Stage = "committed" // it is the committed image
)

func (o InstallOptions) hook(st Stage) error {
	if o.Hook == nil {
		return nil
	}
	return o.Hook(st)
}

// Trusted returns the keys the committed image trusts (its manifest's
// trusted_keys).
func (s *Slots) Trusted() ([]ed25519.PublicKey, error) {
	st, err := s.State()
	if err != nil || st.Committed == "" {
		return nil, err
	}
	mb, err := os.ReadFile(filepath.Join(s.SlotDir(st.Committed), ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("update: committed slot %s: %w", st.Committed, err)
	}
	m, err := ParseManifest(mb)
	if err != nil {
		return nil, err
	}
	return m.Trusted()
}

// Install writes the image in src into the inactive slot and makes it the
// next to boot (once: see State). The image is verified first, before
// anything is written: signed by a key the committed image trusts (or
// endorsed by one), every file as its manifest says. The first image
// installed into empty slots becomes the committed one at once (there is
// nothing to return to); it is checked against its own manifest and, if
// signed, its own trusted keys. It returns the slot written.
func (s *Slots) Install(src string, o InstallOptions) (slot string, err error) {
	st, err := s.State()
	if err != nil {
		return "", err
	}
	trusted, err := s.Trusted()
	if err != nil {
		return "", err
	}
	first := st.Committed == ""
	var mb []byte // the image's manifest, read once for the checks that need it
	var m *Manifest
	if first {
		// Self-consistency: signed by a key the image itself trusts.
		if mb, m, err = readManifest(src); err != nil {
			return "", err
		}
		if trusted, err = m.Trusted(); err != nil {
			return "", err
		}
	}
	if len(trusted) > 0 {
		if _, err := VerifyDir(src, trusted); err != nil {
			return "", err
		}
	} else {
		if !o.AllowUnsigned && !first {
			return "", fmt.Errorf("update: the committed image trusts no key (built without --sign): refusing the image in %s", src)
		}
		if err := checkUnsigned(src); err != nil {
			return "", err
		}
	}
	if o.DiskFormat > 0 {
		if m == nil {
			if mb, m, err = readManifest(src); err != nil {
				return "", err
			}
		}
		if err := CheckFormat(o.DiskFormat, m.DataFormat, m.App+" "+Version(mb)); err != nil {
			return "", err
		}
	}
	if err := o.hook(StageVerified); err != nil {
		return "", err
	}
	slot = SlotA
	if !first {
		slot = Other(st.Committed)
	}
	if st.Next != "" {
		// A test pending in the slot about to be overwritten is
		// cancelled first.
		st.Next, st.Tried = "", false
		if err := s.setState(st); err != nil {
			return "", err
		}
	}
	if err := o.hook(StageCleared); err != nil {
		return "", err
	}
	if err := s.copyImage(src, slot, o); err != nil {
		return "", err
	}
	if err := o.hook(StageWritten); err != nil {
		return "", err
	}
	if first {
		st.Committed = slot
	} else {
		st.Next, st.Tried = slot, false
	}
	if o.given != "" {
		st.Given = o.given
	}
	if err := s.setState(st); err != nil {
		return "", err
	}
	if err := o.hook(StagePending); err != nil {
		return "", err
	}
	return slot, nil
}

// checkUnsigned checks an unsigned image against its manifest.
func checkUnsigned(src string) error {
	_, m, err := readManifest(src)
	if err != nil {
		return err
	}
	return checkFiles(src, m)
}

// readManifest reads and parses the manifest of the image in dir.
func readManifest(dir string) ([]byte, *Manifest, error) {
	mb, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, nil, fmt.Errorf("update: image %s: %w", dir, err)
	}
	m, err := ParseManifest(mb)
	if err != nil {
		return nil, nil, err
	}
	return mb, m, nil
}

// imageFiles are the files of the image in dir: the manifest, its
// signature if any, and what the manifest lists.
func imageFiles(dir string) ([]string, error) {
	_, m, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	names := []string{ManifestFile}
	if _, err := os.Stat(filepath.Join(dir, SignatureFile)); err == nil {
		names = append(names, SignatureFile)
	}
	for _, f := range m.Files {
		names = append(names, f.Name)
	}
	return names, nil
}

// copyImage writes the image in src to slot: into a temporary folder,
// checked against the manifest there, synced, then renamed over the slot.
func (s *Slots) copyImage(src, slot string, o InstallOptions) error {
	names, err := imageFiles(src)
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, "."+slot+".new")
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	for i, n := range names {
		if err := copyFile(filepath.Join(src, n), filepath.Join(tmp, n)); err != nil {
			return err
		}
		if i == 0 {
			if err := o.hook(StageCopying); err != nil {
				return err
			}
		}
	}
	if err := checkUnsigned(tmp); err != nil {
		return fmt.Errorf("update: the copy in slot %s: %w", slot, err)
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	dst := s.SlotDir(slot)
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	return syncDir(s.Dir)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("update: writing %s: %w", dst, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("update: %w", err)
	}
	return out.Close()
}

// Boot is the slot to boot now.
type Boot struct {
	Slot string
	// Dir is the slot's image folder.
	Dir string
	// Test is set for a new image's test boot: the launcher commits it
	// (Commit) when the appliance reports itself good, and never boots
	// it again otherwise.
	Test bool
	// RolledBack is set when this boot returns to the committed slot
	// because the test boot of RolledBack did not commit.
	RolledBack string
}

// Boot says which slot to boot, applying the try-once rule: a pending
// image is marked tried (on disk, before the boot) and test-booted; a
// pending image already tried is given up (rolled back) and the committed
// slot boots.
func (s *Slots) Boot() (Boot, error) {
	st, err := s.State()
	if err != nil {
		return Boot{}, err
	}
	if st.Committed == "" {
		return Boot{}, fmt.Errorf("update: slots %s hold no image (install one first)", s.Dir)
	}
	var rolled string
	switch {
	case st.Next != "" && !st.Tried:
		st.Tried = true
		if err := s.setState(st); err != nil {
			return Boot{}, err
		}
		return Boot{Slot: st.Next, Dir: s.SlotDir(st.Next), Test: true}, nil
	case st.Next != "":
		rolled = st.Next
		st.RolledBack = &Rollback{Slot: st.Next, Version: s.version(st.Next), At: s.now().UTC(),
			Why: "its test boot did not report the appliance good"}
		st.Next, st.Tried = "", false
		if err := s.setState(st); err != nil {
			return Boot{}, err
		}
	}
	return Boot{Slot: st.Committed, Dir: s.SlotDir(st.Committed), RolledBack: rolled}, nil
}

// Commit makes slot, whose test boot has reported the appliance good, the
// committed slot. Committing the committed slot does nothing.
func (s *Slots) Commit(slot string) error {
	st, err := s.State()
	if err != nil {
		return err
	}
	if st.Committed == slot && st.Next == "" {
		return nil
	}
	if st.Next != slot || !st.Tried {
		return fmt.Errorf("update: slot %s is not in its test boot (state: committed %q, next %q, tried %v)", slot, st.Committed, st.Next, st.Tried)
	}
	st.Committed, st.Next, st.Tried = slot, "", false
	return s.setState(st)
}

// CheckRollback refuses, before anything is written, a RollbackByHand
// whose image could not serve a data disk in format disk (CheckFormat):
// after a migration committed, the previous image writes an older format.
func (s *Slots) CheckRollback(disk int) error {
	st, err := s.State()
	if err != nil {
		return err
	}
	if st.Committed == "" {
		return fmt.Errorf("update: slots %s hold no image", s.Dir)
	}
	to := st.Committed
	if st.Next == "" {
		to = Other(st.Committed)
	}
	mb, err := os.ReadFile(filepath.Join(s.SlotDir(to), ManifestFile))
	if err != nil {
		return fmt.Errorf("update: no previous image to return to in slot %s: %w", to, err)
	}
	m, err := ParseManifest(mb)
	if err != nil {
		return err
	}
	if err := CheckFormat(disk, m.DataFormat, fmt.Sprintf("slot %s's image (%s %s)", to, m.App, Version(mb))); err != nil {
		return fmt.Errorf("%w: refusing the rollback", err)
	}
	return nil
}

// RollbackByHand returns to the other image: it cancels a pending new
// image, or, with none pending, makes the other slot's image the committed
// one (it was committed before the last update). It returns the slot that
// boots next.
func (s *Slots) RollbackByHand() (string, error) {
	st, err := s.State()
	if err != nil {
		return "", err
	}
	if st.Committed == "" {
		return "", fmt.Errorf("update: slots %s hold no image", s.Dir)
	}
	if st.Next != "" {
		st.RolledBack = &Rollback{Slot: st.Next, Version: s.version(st.Next), At: s.now().UTC(), Why: "rolled back by hand before its commit"}
		st.Next, st.Tried = "", false
		return st.Committed, s.setState(st)
	}
	other := Other(st.Committed)
	if err := checkUnsigned(s.SlotDir(other)); err != nil {
		return "", fmt.Errorf("update: no previous image to return to in slot %s: %w", other, err)
	}
	st.RolledBack = &Rollback{Slot: st.Committed, Version: s.version(st.Committed), At: s.now().UTC(), Why: "rolled back by hand"}
	st.Committed = other
	return other, s.setState(st)
}

// SlotInfo is one slot as status shows it.
type SlotInfo struct {
	Slot      string
	Version   string // "" for an empty slot
	App       string
	Committed bool
	Next      bool
	Tried     bool
	// DataFormat is the data format its image writes (1 for an image
	// from before formats; 0 for an empty slot).
	DataFormat int
}

// Status returns the state and both slots.
func (s *Slots) Status() (State, []SlotInfo, error) {
	st, err := s.State()
	if err != nil {
		return st, nil, err
	}
	var out []SlotInfo
	for _, slot := range []string{SlotA, SlotB} {
		i := SlotInfo{Slot: slot, Committed: st.Committed == slot, Next: st.Next == slot, Tried: st.Next == slot && st.Tried}
		if mb, err := os.ReadFile(filepath.Join(s.SlotDir(slot), ManifestFile)); err == nil {
			i.Version = Version(mb)
			if m, err := ParseManifest(mb); err == nil {
				i.App = m.App
				i.DataFormat = 1
				if m.DataFormat != nil {
					i.DataFormat = m.DataFormat.Current()
				}
			}
		}
		out = append(out, i)
	}
	return st, out, nil
}

func (s *Slots) version(slot string) string {
	mb, err := os.ReadFile(filepath.Join(s.SlotDir(slot), ManifestFile))
	if err != nil {
		return ""
	}
	return Version(mb)
}

// Given installs the image in dir, the one a launcher is configured with,
// unless it is the image the launcher last installed this way (State.Given,
// by manifest hash): starting an appliance again with the same
// configuration boots the slots as they are, so it never undoes the
// updates received since; a configuration naming another image installs
// that one once (a test boot, see Install). It returns the slot written,
// "" when nothing was installed.
func (s *Slots) Given(dir string, o InstallOptions) (string, error) {
	mb, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return "", fmt.Errorf("update: image %s: %w", dir, err)
	}
	st, err := s.State()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(mb)
	h := hex.EncodeToString(sum[:])
	if st.Given == h {
		return "", nil
	}
	o.given = h
	return s.Install(dir, o)
}
