package update

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// send posts the image in dir as a bundle, as nymote update does.
func send(t *testing.T, url, dir, user, pw string) (int, string) {
	t.Helper()
	var body bytes.Buffer
	if err := WriteBundle(&body, dir); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url, &body)
	req.SetBasicAuth(user, pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReceiveAndPickUp: an appliance receives an update over HTTP(S) and
// writes it to its update disk; the host installs it into the inactive
// slot at the next boot and test-boots it. Another key's, a tampered and
// an unauthenticated update are refused with nothing written.
func TestReceiveAndPickUp(t *testing.T) {
	for _, mode := range []string{"stream", "sink"} {
		t.Run(mode, func(t *testing.T) { testReceiveAndPickUp(t, mode == "stream") })
	}
}

// testReceiveAndPickUp is TestReceiveAndPickUp with the update disk
// written as the bundle arrives (stream: Receiver.Stream, as the
// appliance does) or after it was verified in memory (Receiver.Sink).
func testReceiveAndPickUp(t *testing.T, stream bool) {
	_, s := newKey(t, "k")
	_, other := newKey(t, "other")
	sl := installed(t, s)
	if err := CreateUpdateDisk(sl.UpdateDisk()); err != nil {
		t.Fatal(err)
	}
	header := func() []byte {
		f, err := os.Open(sl.UpdateDisk())
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 512)
		f.ReadAt(b, 0)
		return b
	}
	empty := header()
	rebooted := make(chan struct{}, 4)
	rc := &Receiver{
		Trusted: []ed25519.PublicKey{s.Public()},
		Authorize: BasicAuth(func(u, p string) error {
			if u == "admin" && p == "secret" {
				return nil
			}
			return errors.New("wrong name or password")
		}),
		Sink:   func(im *Image) error { return WriteUpdateDisk(sl.UpdateDisk(), im) },
		Reboot: func() { rebooted <- struct{}{} },
	}
	if stream {
		rc.Stream = func(*Image) (BundleSink, error) { return OpenUpdateDisk(sl.UpdateDisk()) }
	}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	unchanged := func(t *testing.T) {
		t.Helper()
		if !bytes.Equal(header(), empty) {
			t.Error("the update disk was written")
		}
		if v, err := sl.PickUp(InstallOptions{}); err != nil || v != "" {
			t.Errorf("PickUp after a refusal: %q, %v; want nothing", v, err)
		}
	}
	t.Run("unauthorised", func(t *testing.T) {
		code, _ := send(t, srv.URL, fakeImage(t, "v2", s), "admin", "guess")
		if code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", code)
		}
		unchanged(t)
	})
	t.Run("another key", func(t *testing.T) {
		code, body := send(t, srv.URL, fakeImage(t, "v2", other), "admin", "secret")
		if code != http.StatusForbidden || !strings.Contains(body, "not signed by a trusted key") {
			t.Errorf("status %d %q, want 403 naming the key", code, body)
		}
		unchanged(t)
	})
	t.Run("tampered", func(t *testing.T) {
		d := fakeImage(t, "v2", s)
		os.WriteFile(filepath.Join(d, "vmlinux"), []byte("vmlinux of evil\n"), 0o644)
		code, _ := send(t, srv.URL, d, "admin", "secret")
		if code != http.StatusUnprocessableEntity {
			t.Errorf("status %d, want 422", code)
		}
		unchanged(t)
	})
	t.Run("good", func(t *testing.T) {
		code, body := send(t, srv.URL, fakeImage(t, "v2", s), "admin", "secret")
		if code != http.StatusAccepted || !strings.Contains(body, "v2") {
			t.Fatalf("status %d %q, want 202 naming v2", code, body)
		}
		<-rebooted
		v, err := sl.PickUp(InstallOptions{})
		if err != nil || !strings.HasPrefix(v, "v2") {
			t.Fatalf("PickUp: %q, %v; want v2", v, err)
		}
		if got, b := bootedVersion(t, sl.Dir); got != "v2" || !b.Test {
			t.Fatalf("boot after PickUp: %s (test %v), want v2's test boot", got, b.Test)
		}
		if v, err := sl.PickUp(InstallOptions{}); err != nil || v != "" {
			t.Errorf("second PickUp: %q, %v; want nothing (the disk was emptied)", v, err)
		}
	})
}

func TestReadBundleOrder(t *testing.T) {
	_, s := newKey(t, "k")
	var b bytes.Buffer
	if err := WriteBundle(&b, fakeImage(t, "v1", nil)); !errors.Is(err, ErrUnsigned) {
		t.Errorf("WriteBundle of an unsigned image: %v, want ErrUnsigned", err)
	}
	b.Reset()
	WriteBundle(&b, fakeImage(t, "v1", s))
	// Cut short: the files are missing.
	short := b.Bytes()[:2048]
	if _, err := ReadBundle(bytes.NewReader(short), []ed25519.PublicKey{s.Public()}, 0); err == nil {
		t.Error("a truncated bundle was accepted")
	}
	im, err := ReadBundle(bytes.NewReader(b.Bytes()), []ed25519.PublicKey{s.Public()}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Files) != 2 {
		t.Errorf("%d files, want 2", len(im.Files))
	}
	if _, err := ReadBundle(bytes.NewReader(b.Bytes()), []ed25519.PublicKey{s.Public()}, 10); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("over the size bound: %v", err)
	}
}

// TestBundleSkipsCard: an SD card board's image lists its card image
// (signed with the rest) but a bundle leaves it out; a sink that cannot
// take an update now (ErrNotNow) answers 409.
func TestBundleSkipsCard(t *testing.T) {
	_, s := newKey(t, "k")
	dir := t.TempDir()
	m := Manifest{App: "hello", AppVersion: "v2", Board: "cubieboard", TrustedKeys: []string{EncodeKey(s.Public())}}
	for _, n := range []string{"initrd.cpio.zst", "sdcard.img", "vmlinuz"} {
		b := []byte(n + " of v2\n")
		os.WriteFile(filepath.Join(dir, n), b, 0o644)
		sum := sha256.Sum256(b)
		m.Files = append(m.Files, File{Name: n, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	os.WriteFile(filepath.Join(dir, ManifestFile), mb, 0o644)
	os.WriteFile(filepath.Join(dir, SignatureFile), s.SignManifest(mb), 0o644)
	// The card need not be there to send the image.
	os.Remove(filepath.Join(dir, "sdcard.img"))
	var b bytes.Buffer
	if err := WriteBundle(&b, dir); err != nil {
		t.Fatal(err)
	}
	im, err := ReadBundle(bytes.NewReader(b.Bytes()), []ed25519.PublicKey{s.Public()}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range im.Files {
		names = append(names, f.Name)
	}
	if strings.Join(names, " ") != "initrd.cpio.zst vmlinuz" {
		t.Errorf("bundle files %v, want the initramfs and the kernel without the card", names)
	}

	rc := &Receiver{Trusted: []ed25519.PublicKey{s.Public()}, Authorize: func(*http.Request) error { return nil },
		Sink: func(*Image) error { return fmt.Errorf("%w: on its test boot", ErrNotNow) }}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	if code, body := send(t, srv.URL, dir, "admin", "x"); code != http.StatusConflict || !strings.Contains(body, "test boot") {
		t.Errorf("a sink that cannot take it now: %d %q, want 409", code, body)
	}
}
