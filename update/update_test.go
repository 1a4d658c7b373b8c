package update

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/appliance/app"
)

// newKey creates a signing key in a temporary folder and loads it.
func newKey(t testing.TB, name string) (string, *Signer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if _, err := CreateKey(path); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, s
}

// fakeImage writes an image folder: two artefacts whose content says
// version, a manifest listing them (trusting the signer's key, if any)
// and, with a signer, its signature.
func fakeImage(t testing.TB, version string, s *Signer) string {
	t.Helper()
	return fakeImageFormat(t, version, s, nil)
}

// fakeImageFormat is fakeImage with a data format in its manifest.
func fakeImageFormat(t testing.TB, version string, s *Signer, f *app.DataFormat) string {
	t.Helper()
	dir := t.TempDir()
	m := Manifest{App: "hello", AppVersion: version, Board: "microvm-x86_64", DataFormat: f}
	for _, n := range []string{"vmlinux", "initrd.cpio.zst"} {
		b := []byte(n + " of " + version + "\n")
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		m.Files = append(m.Files, File{Name: n, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	}
	if s != nil {
		m.TrustedKeys = []string{EncodeKey(s.Public())}
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), mb, 0o644); err != nil {
		t.Fatal(err)
	}
	if s != nil {
		if err := os.WriteFile(filepath.Join(dir, SignatureFile), s.SignManifest(mb), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCreateKey(t *testing.T) {
	path, s := newKey(t, "nymote.key")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key mode %v, want 0600", got)
	}
	pub, err := os.ReadFile(path + PublicSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := DecodeKey(string(pub)); err != nil || !k.Equal(s.Public()) {
		t.Errorf("public key file %q does not hold the key's public half (%v)", pub, err)
	}
	if _, err := CreateKey(path); err == nil {
		t.Error("CreateKey replaced an existing key")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadSigner of a key others can read: %v, want a refusal naming chmod 600", err)
	}
	other := filepath.Join(t.TempDir(), "not-a-key")
	os.WriteFile(other, []byte("hello"), 0o600)
	if _, err := LoadSigner(other); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("LoadSigner of a text file: %v, want an error naming it", err)
	}
}

func TestVerify(t *testing.T) {
	_, s := newKey(t, "k")
	_, other := newKey(t, "other")
	trusted := []ed25519.PublicKey{s.Public()}
	t.Run("good", func(t *testing.T) {
		dir := fakeImage(t, "v1", s)
		m, err := VerifyDir(dir, trusted)
		if err != nil {
			t.Fatal(err)
		}
		if m.AppVersion != "v1" {
			t.Errorf("version %q, want v1", m.AppVersion)
		}
	})
	t.Run("another key", func(t *testing.T) {
		dir := fakeImage(t, "v1", other)
		if _, err := VerifyDir(dir, trusted); !errors.Is(err, ErrUntrusted) {
			t.Errorf("got %v, want ErrUntrusted", err)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		dir := fakeImage(t, "v1", nil)
		if _, err := VerifyDir(dir, trusted); !errors.Is(err, ErrUnsigned) {
			t.Errorf("got %v, want ErrUnsigned", err)
		}
	})
	t.Run("tampered file", func(t *testing.T) {
		dir := fakeImage(t, "v1", s)
		os.WriteFile(filepath.Join(dir, "vmlinux"), []byte("vmlinux of v666\n"), 0o644)
		if _, err := VerifyDir(dir, trusted); !errors.Is(err, ErrTampered) {
			t.Errorf("got %v, want ErrTampered", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		dir := fakeImage(t, "v1", s)
		os.Remove(filepath.Join(dir, "vmlinux"))
		if _, err := VerifyDir(dir, trusted); !errors.Is(err, ErrTampered) {
			t.Errorf("got %v, want ErrTampered", err)
		}
	})
	t.Run("tampered manifest", func(t *testing.T) {
		dir := fakeImage(t, "v1", s)
		mb, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
		os.WriteFile(filepath.Join(dir, ManifestFile), []byte(strings.Replace(string(mb), "v1", "v2", 1)), 0o644)
		if _, err := VerifyDir(dir, trusted); !errors.Is(err, ErrUntrusted) {
			t.Errorf("got %v, want ErrUntrusted", err)
		}
	})
	t.Run("no trusted key", func(t *testing.T) {
		dir := fakeImage(t, "v1", s)
		if _, err := VerifyDir(dir, nil); !errors.Is(err, ErrUntrusted) {
			t.Errorf("got %v, want ErrUntrusted", err)
		}
	})
}

func TestRotate(t *testing.T) {
	oldPath, old := newKey(t, "old")
	newPath, _ := newKey(t, "new")
	if err := Rotate(oldPath, newPath); err != nil {
		t.Fatal(err)
	}
	nw, err := LoadSigner(newPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(nw.Chain) != 1 {
		t.Fatalf("chain of %d endorsements, want 1", len(nw.Chain))
	}
	dir := fakeImage(t, "v2", nw)
	// An appliance trusting the old key accepts the new key's image.
	if _, err := VerifyDir(dir, []ed25519.PublicKey{old.Public()}); err != nil {
		t.Errorf("image signed by the rotated key, trusting the old key: %v", err)
	}
	// A third rotation: the chain grows, the oldest key still leads there.
	newerPath, _ := newKey(t, "newer")
	if err := Rotate(newPath, newerPath); err != nil {
		t.Fatal(err)
	}
	newer, err := LoadSigner(newerPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDir(fakeImage(t, "v3", newer), []ed25519.PublicKey{old.Public()}); err != nil {
		t.Errorf("image signed two rotations later, trusting the first key: %v", err)
	}
	// An endorsement by a key nobody trusts counts for nothing.
	_, stranger := newKey(t, "stranger")
	if _, err := VerifyDir(dir, []ed25519.PublicKey{stranger.Public()}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("rotated key's image, trusting a stranger: %v, want ErrUntrusted", err)
	}
	// A forged endorsement (signed by the new key itself, claiming the
	// old one) is refused.
	forged := *nw
	forged.Chain = []Endorsement{{Key: nw.Chain[0].Key, By: nw.Chain[0].By, Signature: EncodeKey(make([]byte, 32)) + EncodeKey(make([]byte, 32))}}
	if _, err := VerifyDir(fakeImage(t, "v2", &forged), []ed25519.PublicKey{old.Public()}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("forged endorsement: %v, want ErrUntrusted", err)
	}
	if err := Rotate(oldPath, oldPath); err == nil {
		t.Error("Rotate of a key to itself succeeded")
	}
}

func TestTrustedKeysFile(t *testing.T) {
	_, a := newKey(t, "a")
	_, b := newKey(t, "b")
	got, err := ParseTrustedKeys(TrustedKeysFile([]ed25519.PublicKey{a.Public(), b.Public()}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !a.Public().Equal(got[0]) || !b.Public().Equal(got[1]) {
		t.Errorf("round trip gave %d keys", len(got))
	}
	if _, err := ParseTrustedKeys([]byte("# c\nnot a key\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: %v, want an error naming line 2", err)
	}
}
