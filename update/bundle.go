package update

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A bundle is an image as it travels: a tar stream of manifest.json,
// manifest.sig, then the files the manifest lists, in its order. The
// manifest and its signature come first so that a receiver refuses another
// key's image before it reads the rest.

// BundleSkips are image files a bundle leaves out: an SD card board's
// whole card image (sdcard.img, for flashing a new card; it holds a data
// partition), whose boot files the bundle carries on their own. The
// signature still covers them (the manifest lists them); a receiver gets
// every other file.
var BundleSkips = []string{"sdcard.img"}

func skipped(name string) bool {
	for _, s := range BundleSkips {
		if s == name {
			return true
		}
	}
	return false
}

// DefaultMaxImageBytes bounds the files of a received image (ReadBundle
// holds it in memory until verified; VerifyBundle does not, and the update
// disk holds UpdateDiskSize).
const DefaultMaxImageBytes = 96 << 20

// Image is a verified image in memory.
type Image struct {
	Manifest  []byte
	Signature []byte
	// Files are the manifest's files, in its order, less BundleSkips.
	Files []ImageFile
	// Parsed is the parsed manifest.
	Parsed *Manifest
}

// ImageFile is one file of an Image.
type ImageFile struct {
	Name string
	Data []byte
}

// Version is the image's version (see Version).
func (im *Image) Version() string { return Version(im.Manifest) }

// WriteBundle writes the signed image in dir to w as a bundle.
func WriteBundle(w io.Writer, dir string) error {
	names, err := imageFiles(dir)
	if err != nil {
		return err
	}
	if len(names) < 2 || names[1] != SignatureFile {
		return fmt.Errorf("update: image %s: %w", dir, ErrUnsigned)
	}
	tw := tar.NewWriter(w)
	for _, n := range names {
		if skipped(n) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	return tw.Close()
}

// ReadBundle reads a bundle from r and verifies it: the signature against
// trusted first (another key's or an unsigned image is refused before its
// files are read), then each file against the manifest. The files of the
// image may total at most max bytes (0: DefaultMaxImageBytes). Nothing is
// written anywhere: the caller writes the verified Image. It holds the
// whole image in memory; VerifyBundle holds none of it.
func ReadBundle(r io.Reader, trusted []ed25519.PublicKey, max int64) (*Image, error) {
	return readBundle(r, trusted, max, nil, true)
}

// VerifyBundle reads a bundle from r and verifies it as ReadBundle does,
// without holding the image's files: each passes through a fixed buffer
// into its hash, so memory stays bounded (the manifest and signature, at
// most 1 MiB each, and a 64 KiB buffer) whatever the image's size. The
// caller keeps the bytes it needs as they are read (an io.TeeReader onto
// an update disk: see Receiver.Stream); they are verified only when
// VerifyBundle returns no error.
//
// signed, when not nil, is called once the signature and manifest are
// verified and the image's size checked, before any file is read (the
// Image has no Files yet); its error ends the reading and is returned as
// it is.
//
// The Image returned lists the files with no Data.
func VerifyBundle(r io.Reader, trusted []ed25519.PublicKey, max int64, signed func(*Image) error) (*Image, error) {
	return readBundle(r, trusted, max, signed, false)
}

func readBundle(r io.Reader, trusted []ed25519.PublicKey, max int64, signed func(*Image) error, keep bool) (*Image, error) {
	if max <= 0 {
		max = DefaultMaxImageBytes
	}
	tr := tar.NewReader(r)
	header := func(want string, limit int64) (*tar.Header, error) {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("update: bundle ends before %s: %w", want, ErrTampered)
		}
		if err != nil {
			return nil, fmt.Errorf("update: bundle, before %s: %w", want, err)
		}
		if h.Name != want {
			if want == SignatureFile {
				return nil, fmt.Errorf("update: bundle: %w", ErrUnsigned)
			}
			return nil, fmt.Errorf("update: bundle has %q where %s should be: %w", h.Name, want, ErrTampered)
		}
		if h.Typeflag != tar.TypeReg || h.Size < 0 || h.Size > limit {
			return nil, fmt.Errorf("update: bundle: %s (%d bytes) is not a file of at most %d bytes: %w", want, h.Size, limit, ErrTampered)
		}
		return h, nil
	}
	small := func(want string) ([]byte, error) {
		if _, err := header(want, 1<<20); err != nil {
			return nil, err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("update: bundle: reading %s: %w", want, err)
		}
		return b, nil
	}
	im := &Image{}
	var err error
	if im.Manifest, err = small(ManifestFile); err != nil {
		return nil, err
	}
	if im.Signature, err = small(SignatureFile); err != nil {
		return nil, err
	}
	if _, err := VerifySignature(im.Manifest, im.Signature, trusted); err != nil {
		return nil, err
	}
	if im.Parsed, err = ParseManifest(im.Manifest); err != nil {
		return nil, err
	}
	var total int64
	for _, f := range im.Parsed.Files {
		if !skipped(f.Name) {
			total += f.Size
		}
	}
	if total > max {
		return nil, fmt.Errorf("update: the image's files total %d bytes, more than the %d this appliance takes", total, max)
	}
	if signed != nil {
		if err := signed(im); err != nil {
			return nil, err
		}
	}
	buf := make([]byte, 64<<10)
	for _, f := range im.Parsed.Files {
		if skipped(f.Name) {
			continue
		}
		h, err := header(f.Name, f.Size)
		if err != nil {
			return nil, err
		}
		sum := sha256.New()
		var data []byte
		var n int64
		if keep {
			data = make([]byte, h.Size)
			var k int
			k, err = io.ReadFull(tr, data)
			n = int64(k)
			sum.Write(data[:k])
		} else {
			// io.Discard would read with a buffer of its own: the
			// plain Writer makes CopyBuffer use buf.
			n, err = io.CopyBuffer(struct{ io.Writer }{sum}, tr, buf)
		}
		if err != nil {
			return nil, fmt.Errorf("update: bundle: reading %s: %w", f.Name, err)
		}
		if n != f.Size || hex.EncodeToString(sum.Sum(nil)) != f.SHA256 {
			return nil, fmt.Errorf("update: %s: %w", f.Name, ErrTampered)
		}
		im.Files = append(im.Files, ImageFile{Name: f.Name, Data: data})
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("update: bundle has more than its manifest lists: %w", ErrTampered)
	}
	return im, nil
}

// WriteDir writes the image into dir (created if missing).
func (im *Image) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	files := append([]ImageFile{{ManifestFile, im.Manifest}, {SignatureFile, im.Signature}}, im.Files...)
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			return fmt.Errorf("update: %w", err)
		}
	}
	return nil
}

// The update disk: a raw disk that a host-booted appliance writes a
// received image to, and that the host installs from (PickUp). Its first
// sector is a header (updateDiskMagic, then "empty" or "bundle SIZE
// SHA256"); the bundle starts at updateDiskData. The appliance writes the
// bundle, syncs, then the header, syncs: a power cut leaves no header or a
// header whose bundle is whole.
const (
	updateDiskMagic = "NYMOTE-UPDATE-DISK-1\n"
	updateDiskData  = 4096
	// UpdateDiskSize is the size of an update disk CreateUpdateDisk
	// makes (a sparse file).
	UpdateDiskSize = 128 << 20
)

// UpdateDiskFile is the update disk's name in a slots folder.
const UpdateDiskFile = "update.img"

// CreateUpdateDisk creates an empty update disk at path unless one is
// there.
func CreateUpdateDisk(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(UpdateDiskSize); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	return writeHeader(f, "empty")
}

func writeHeader(f *os.File, state string) error {
	h := make([]byte, 512)
	copy(h, updateDiskMagic+state+"\n")
	if _, err := f.WriteAt(h, 0); err != nil {
		return fmt.Errorf("update: update disk: %w", err)
	}
	return f.Sync()
}

// WriteUpdateDisk writes a verified image to the update disk (a device or
// file) at path: the bundle, then the header that makes it visible.
func WriteUpdateDisk(path string, im *Image) (err error) {
	w, err := OpenUpdateDisk(path)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	tw := tar.NewWriter(w)
	files := append([]ImageFile{{ManifestFile, im.Manifest}, {SignatureFile, im.Signature}}, im.Files...)
	for _, file := range files {
		if err := tw.WriteHeader(&tar.Header{Name: file.Name, Mode: 0o644, Size: int64(len(file.Data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(file.Data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return w.Commit(im)
}

// UpdateDiskWriter writes a bundle onto an update disk as it arrives, so
// that an appliance takes an image larger than the memory it has to
// spare (the mail app's, with its code disk, is about 32 MiB; its VM has
// 64 MiB): OpenUpdateDisk marks the disk empty, Write appends to the
// bundle area, and only Commit, once the caller has verified the bundle,
// writes the header that makes it visible. A power cut, an error or an
// Abort before Commit leaves the disk empty, which PickUp skips.
//
// Every few MiB, what was written is synced and dropped from the page
// cache: a bundle passing through must not push the running program's
// code pages out of a small appliance's memory.
type UpdateDiskWriter struct {
	f      *os.File
	path   string
	room   int64 // bytes the disk holds after its header
	n      int64 // bundle bytes written
	synced int64 // of which synced and dropped from the cache
	sum    hash.Hash
	err    error
}

// updateDiskFlush is how many bytes an UpdateDiskWriter writes between
// syncs.
const updateDiskFlush = 4 << 20

// OpenUpdateDisk opens the update disk (a device or file) at path for a
// new bundle, marking it empty first: any bundle on it is dropped.
func OpenUpdateDisk(path string) (*UpdateDiskWriter, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("update: update disk: %w", err)
	}
	h := make([]byte, len(updateDiskMagic))
	if _, err := f.ReadAt(h, 0); err != nil || string(h) != updateDiskMagic {
		f.Close()
		return nil, fmt.Errorf("update: %s is not an update disk (no %q header)", path, strings.TrimSpace(updateDiskMagic))
	}
	size, err := f.Seek(0, io.SeekEnd) // a block device's size too
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("update: update disk %s: %w", path, err)
	}
	if err := writeHeader(f, "empty"); err != nil {
		f.Close()
		return nil, err
	}
	return &UpdateDiskWriter{f: f, path: path, room: size - updateDiskData, sum: sha256.New()}, nil
}

// Write appends p to the bundle. A bundle larger than the disk is an
// error, as is any write after one failed.
func (w *UpdateDiskWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.n+int64(len(p)) > w.room {
		w.err = fmt.Errorf("update: the bundle is larger than the %d bytes the update disk %s holds", w.room, w.path)
		return 0, w.err
	}
	n, err := w.f.WriteAt(p, updateDiskData+w.n)
	w.sum.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("update: update disk %s: %w", w.path, err)
		return n, w.err
	}
	if w.n-w.synced >= updateDiskFlush {
		if err := w.flush(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// flush syncs what was written and drops it from the page cache.
func (w *UpdateDiskWriter) flush() error {
	if err := w.f.Sync(); err != nil {
		w.err = fmt.Errorf("update: update disk %s: %w", w.path, err)
		return w.err
	}
	dropCache(w.f, updateDiskData+w.synced, w.n-w.synced)
	w.synced = w.n
	return nil
}

// Commit makes the bundle written visible: it syncs it, then writes the
// header naming its size and sha256. Call it only once the bundle is
// verified (im, which it does not need, is the verified image). The writer
// is closed.
func (w *UpdateDiskWriter) Commit(im *Image) error {
	defer w.f.Close()
	if w.err != nil {
		return w.err
	}
	if w.n == 0 {
		return fmt.Errorf("update: update disk %s: no bundle written", w.path)
	}
	if err := w.flush(); err != nil {
		return err
	}
	w.err = errors.New("update: update disk writer committed")
	return writeHeader(w.f, fmt.Sprintf("bundle %d %s", w.n, hex.EncodeToString(w.sum.Sum(nil))))
}

// Abort closes the writer without a header: the disk stays empty.
func (w *UpdateDiskWriter) Abort() error {
	if w.err == nil {
		w.err = errors.New("update: update disk writer aborted")
	}
	return w.f.Close()
}

var _ BundleSink = (*UpdateDiskWriter)(nil)

// readUpdateDisk returns the bundle on the update disk at path, nil when
// it holds none.
func readUpdateDisk(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	defer f.Close()
	h := make([]byte, 512)
	if _, err := f.ReadAt(h, 0); err != nil {
		return nil, fmt.Errorf("update: update disk %s: %w", path, err)
	}
	rest, ok := strings.CutPrefix(string(h), updateDiskMagic)
	if !ok {
		return nil, fmt.Errorf("update: %s is not an update disk", path)
	}
	line, _, _ := strings.Cut(rest, "\n")
	f2 := strings.Fields(line)
	if len(f2) != 3 || f2[0] != "bundle" {
		return nil, nil
	}
	n, err := strconv.ParseInt(f2[1], 10, 64)
	if err != nil || n <= 0 || n > UpdateDiskSize {
		return nil, fmt.Errorf("update: update disk %s: bad header %q", path, line)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, updateDiskData); err != nil {
		return nil, fmt.Errorf("update: update disk %s: %w", path, err)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != f2[2] {
		return nil, fmt.Errorf("update: update disk %s: the bundle does not match its header", path)
	}
	return b, nil
}

// clearUpdateDisk marks the update disk at path empty.
func clearUpdateDisk(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	defer f.Close()
	return writeHeader(f, "empty")
}

// UpdateDisk is the slots' update disk (see CreateUpdateDisk).
func (s *Slots) UpdateDisk() string { return filepath.Join(s.Dir, UpdateDiskFile) }

// PickUp installs the image an appliance left on the slots' update disk
// (verifying it again against the committed image's trusted keys), then
// empties the disk. It returns the installed image's version, "" when the
// disk held none. An image already in the slots (installed before a power
// cut emptied the disk) is not installed twice.
func (s *Slots) PickUp(o InstallOptions) (string, error) {
	path := s.UpdateDisk()
	b, err := readUpdateDisk(path)
	if err != nil || b == nil {
		return "", err
	}
	trusted, err := s.Trusted()
	if err != nil {
		return "", err
	}
	im, err := ReadBundle(bytes.NewReader(b), trusted, 0)
	if err != nil {
		// A bad bundle is dropped: the running image stays.
		if cerr := clearUpdateDisk(path); cerr != nil {
			return "", errors.Join(err, cerr)
		}
		return "", err
	}
	st, err := s.State()
	if err != nil {
		return "", err
	}
	already := false
	for _, slot := range []string{st.Committed, st.Next} {
		if slot == "" {
			continue
		}
		if mb, err := os.ReadFile(filepath.Join(s.SlotDir(slot), ManifestFile)); err == nil && bytes.Equal(mb, im.Manifest) {
			already = true
		}
	}
	if !already {
		tmp, err := os.MkdirTemp(s.Dir, ".incoming-")
		if err != nil {
			return "", fmt.Errorf("update: %w", err)
		}
		defer os.RemoveAll(tmp)
		if err := im.WriteDir(tmp); err != nil {
			return "", err
		}
		if _, err := s.Install(tmp, o); err != nil {
			return "", err
		}
	}
	return im.Version(), clearUpdateDisk(path)
}

// IsUpdateDisk says whether the device or file at path is an update disk
// (CreateUpdateDisk's header).
func IsUpdateDisk(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := make([]byte, len(updateDiskMagic))
	_, err = f.ReadAt(h, 0)
	return err == nil && string(h) == updateDiskMagic
}
