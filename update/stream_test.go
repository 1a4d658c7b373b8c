package update

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// signedImage writes a signed image folder with the given files, in the
// manifest in their order; tamper, when set, is written in place of that
// file after signing.
func signedImage(t *testing.T, s *Signer, version string, names []string, data [][]byte, tamper map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	m := Manifest{App: "hello", AppVersion: version, Board: "microvm-x86_64", TrustedKeys: []string{EncodeKey(s.Public())}}
	for i, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), data[i], 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data[i])
		m.Files = append(m.Files, File{Name: n, Size: int64(len(data[i])), SHA256: hex.EncodeToString(sum[:])})
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	os.WriteFile(filepath.Join(dir, ManifestFile), mb, 0o644)
	os.WriteFile(filepath.Join(dir, SignatureFile), s.SignManifest(mb), 0o644)
	for n, b := range tamper {
		os.WriteFile(filepath.Join(dir, n), b, 0o644)
	}
	return dir
}

// noise returns n bytes that do not compress (an image's files do not).
func noise(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	r.Read(b)
	return b
}

// streamEnv is a Receiver streaming onto an update disk beside slots.
type streamEnv struct {
	t      *testing.T
	s      *Signer
	sl     *Slots
	rc     *Receiver
	opened int
}

func newStreamEnv(t *testing.T) *streamEnv {
	_, s := newKey(t, "k")
	e := &streamEnv{t: t, s: s, sl: installed(t, s)}
	if err := CreateUpdateDisk(e.sl.UpdateDisk()); err != nil {
		t.Fatal(err)
	}
	e.rc = &Receiver{Trusted: []ed25519.PublicKey{s.Public()}, Authorize: func(*http.Request) error { return nil },
		Stream: func(*Image) (BundleSink, error) {
			e.opened++
			return OpenUpdateDisk(e.sl.UpdateDisk())
		}}
	return e
}

// post hands body to the receiver as an update's request body.
func (e *streamEnv) post(body io.Reader) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.rc.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", body))
	return w
}

func (e *streamEnv) header() string {
	f, err := os.Open(e.sl.UpdateDisk())
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 512)
	f.ReadAt(b, 0)
	return string(bytes.TrimRight(b, "\x00"))
}

func bundle(t *testing.T, dir string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteBundle(&b, dir); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestStreamTamperedMidStream: a file whose bytes differ from the manifest
// after others were already written to the update disk is refused and the
// disk left without a bundle; a bundle already there survives another
// key's (refused before anything is written).
func TestStreamTamperedMidStream(t *testing.T) {
	e := newStreamEnv(t)
	names := []string{"vmlinux", "initrd.cpio.zst", "code.img"}
	data := [][]byte{noise(300<<10, 1), noise(5<<20, 2), noise(200<<10, 3)}
	bad := bytes.Clone(data[1])
	bad[3<<20] ^= 1 // the same size, one bit off in its middle
	w := e.post(bytes.NewReader(bundle(t, signedImage(t, e.s, "v2", names, data, map[string][]byte{"initrd.cpio.zst": bad}))))
	if w.Code != http.StatusUnprocessableEntity || !strings.Contains(w.Body.String(), "initrd.cpio.zst") {
		t.Errorf("tampered: %d %q, want 422 naming initrd.cpio.zst", w.Code, w.Body.String())
	}
	if e.opened != 1 {
		t.Errorf("the update disk was opened %d times, want once (the signature was good)", e.opened)
	}
	if h := e.header(); h != updateDiskMagic+"empty\n" {
		t.Errorf("header after a tampered bundle: %q, want empty", h)
	}
	if v, err := e.sl.PickUp(InstallOptions{}); err != nil || v != "" {
		t.Errorf("PickUp: %q, %v; want nothing", v, err)
	}

	// A good one, left for the next boot; then another key's.
	if w := e.post(bytes.NewReader(bundle(t, signedImage(t, e.s, "v2", names, data, nil)))); w.Code != http.StatusAccepted {
		t.Fatalf("good: %d %s", w.Code, w.Body)
	}
	good := e.header()
	_, other := newKey(t, "other")
	if w := e.post(bytes.NewReader(bundle(t, signedImage(t, other, "v3", names, data, nil)))); w.Code != http.StatusForbidden {
		t.Errorf("another key: %d, want 403", w.Code)
	}
	if e.opened != 2 || e.header() != good {
		t.Errorf("another key's bundle opened the disk (%d opens) or changed its header", e.opened)
	}
	v, err := e.sl.PickUp(InstallOptions{})
	if err != nil || !strings.HasPrefix(v, "v2") {
		t.Fatalf("PickUp: %q, %v; want v2", v, err)
	}
	for i, n := range names {
		if b, err := os.ReadFile(filepath.Join(e.sl.SlotDir(SlotB), n)); err != nil || !bytes.Equal(b, data[i]) {
			t.Errorf("slot b's %s differs from the image's (%v)", n, err)
		}
	}
}

// TestStreamTruncated: a bundle cut anywhere (in its manifest, in the
// middle of a file, before its end) is refused with nothing made visible.
func TestStreamTruncated(t *testing.T) {
	e := newStreamEnv(t)
	names := []string{"vmlinux", "initrd.cpio.zst"}
	data := [][]byte{noise(100<<10, 4), noise(6<<20, 5)}
	b := bundle(t, signedImage(t, e.s, "v2", names, data, nil))
	for _, n := range []int{0, 300, 2048, len(b) / 2, len(b) - 1024 - 512, len(b) - 1} {
		w := e.post(bytes.NewReader(b[:n]))
		if w.Code < 400 || w.Code >= 500 {
			t.Errorf("cut at %d of %d: %d %q, want a 4xx refusal", n, len(b), w.Code, w.Body.String())
		}
		if h := e.header(); h != updateDiskMagic+"empty\n" {
			t.Errorf("cut at %d: header %q, want empty", n, h)
		}
	}
	if v, err := e.sl.PickUp(InstallOptions{}); err != nil || v != "" {
		t.Errorf("PickUp: %q, %v; want nothing", v, err)
	}
	if w := e.post(bytes.NewReader(b)); w.Code != http.StatusAccepted {
		t.Errorf("the whole bundle: %d %s", w.Code, w.Body)
	}
}

// TestStreamDiskFull: a bundle larger than the update disk is an error of
// the disk (500), not left half visible.
func TestStreamDiskFull(t *testing.T) {
	e := newStreamEnv(t)
	small := filepath.Join(t.TempDir(), "small.img")
	f, err := os.Create(small)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 20)
	writeHeader(f, "empty")
	f.Close()
	e.rc.Stream = func(*Image) (BundleSink, error) { return OpenUpdateDisk(small) }
	w := e.post(bytes.NewReader(bundle(t, signedImage(t, e.s, "v2", []string{"vmlinux"}, [][]byte{noise(2<<20, 6)}, nil))))
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "larger than") {
		t.Errorf("%d %q, want 500 saying the bundle is larger than the disk", w.Code, w.Body.String())
	}
	b, _ := os.ReadFile(small)
	if !bytes.HasPrefix(b, []byte(updateDiskMagic+"empty\n")) {
		t.Errorf("header %q, want empty", b[:64])
	}
}

// TestStreamMemory: taking a 24 MiB image onto the update disk allocates a
// small, fixed amount, not the image (the Sink path, which verifies in
// memory, allocates more than the image: the measure tells them apart).
// Allocations are counted (runtime.MemStats.TotalAlloc), not timed.
func TestStreamMemory(t *testing.T) {
	e := newStreamEnv(t)
	const size = 24 << 20
	names := []string{"vmlinux", "initrd.cpio.zst", "code.img"}
	data := [][]byte{noise(1<<20, 7), noise(3<<20, 8), noise(size-4<<20, 9)}
	path := filepath.Join(t.TempDir(), "bundle.tar")
	if err := os.WriteFile(path, bundle(t, signedImage(t, e.s, "v2", names, data, nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	data = nil
	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	post := func() {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if w := e.post(f); w.Code != http.StatusAccepted {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	streamed := allocated(post)
	t.Logf("a %d MiB image streamed onto the update disk: %d KiB allocated", size>>20, streamed>>10)
	if streamed > 4<<20 {
		t.Errorf("streaming a %d MiB image allocated %d KiB, want at most 4 MiB", size>>20, streamed>>10)
	}
	v, err := e.sl.PickUp(InstallOptions{})
	if err != nil || !strings.HasPrefix(v, "v2") {
		t.Fatalf("PickUp: %q, %v; want v2", v, err)
	}
	e.rc.Stream = nil
	e.rc.Sink = func(*Image) error { return nil }
	inMemory := allocated(post)
	t.Logf("the same verified in memory: %d KiB allocated", inMemory>>10)
	if inMemory < size {
		t.Errorf("verifying in memory allocated %d KiB, less than the image: the measure does not tell", inMemory>>10)
	}
}

// TestVerifyBundleSigned: VerifyBundle calls signed before reading any
// file, and its error ends the reading as it is.
func TestVerifyBundleSigned(t *testing.T) {
	_, s := newKey(t, "k")
	b := bundle(t, signedImage(t, s, "v2", []string{"vmlinux"}, [][]byte{[]byte("kernel")}, nil))
	stop := errors.New("stop here")
	var at int
	r := &countingReader{r: bytes.NewReader(b)}
	_, err := VerifyBundle(r, []ed25519.PublicKey{s.Public()}, 0, func(im *Image) error {
		at = r.n
		if im.Parsed == nil || len(im.Files) != 0 {
			t.Errorf("signed got %+v, want a parsed manifest and no files", im)
		}
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("got %v, want signed's error", err)
	}
	if at == 0 || at >= len(b)-1024 || r.n != at {
		t.Errorf("signed called after %d bytes of %d, reading stopped at %d: want before the files, and no further", at, len(b), r.n)
	}
	im, err := VerifyBundle(bytes.NewReader(b), []ed25519.PublicKey{s.Public()}, 0, nil)
	if err != nil || len(im.Files) != 1 || im.Files[0].Name != "vmlinux" || im.Files[0].Data != nil {
		t.Errorf("VerifyBundle: %+v, %v; want vmlinux without data", im, err)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
