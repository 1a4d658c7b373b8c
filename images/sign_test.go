package images

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/update"
)

// TestSignedBuild: a build with a signing key writes manifest.sig, which
// verifies against the key and no other, and the image trusts the key (in
// its manifest and in its initramfs).
func TestSignedBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image")
	}
	keyPath := filepath.Join(t.TempDir(), "k")
	pub, err := update.CreateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := update.LoadSigner(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m, err := Build(context.Background(), Options{App: "hello", Board: "qemu-x86_64", OutDir: dir, SourceDir: sourceRoot,
		Outputs: []boards.Output{boards.OutputQEMU}, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.TrustedKeys) != 1 || m.TrustedKeys[0] != update.EncodeKey(pub) {
		t.Errorf("manifest trusted_keys %v, want the signing key", m.TrustedKeys)
	}
	if _, err := update.VerifyDir(dir, []ed25519.PublicKey{pub}); err != nil {
		t.Errorf("verifying the signed build: %v", err)
	}
	otherPub, _, _ := ed25519.GenerateKey(nil)
	if _, err := update.VerifyDir(dir, []ed25519.PublicKey{otherPub}); !errors.Is(err, update.ErrUntrusted) {
		t.Errorf("verifying against another key: %v, want ErrUntrusted", err)
	}
	z, err := os.ReadFile(filepath.Join(dir, InitrdFile))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zstd.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r.Name != update.TrustedKeysPath {
			continue
		}
		b, _ := io.ReadAll(io.NewSectionReader(r, 0, int64(r.FileSize)))
		keys, err := update.ParseTrustedKeys(b)
		found = err == nil && len(keys) == 1 && keys[0].Equal(pub)
	}
	if !found {
		t.Errorf("the initramfs has no %s holding the signing key", update.TrustedKeysPath)
	}
}
