package update

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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

// DefaultMaxImageBytes bounds the files of a received image (it is held
// in memory until verified).
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
// written anywhere: the caller writes the verified Image.
func ReadBundle(r io.Reader, trusted []ed25519.PublicKey, max int64) (*Image, error) {
	if max <= 0 {
		max = DefaultMaxImageBytes
	}
	tr := tar.NewReader(r)
	next := func(want string, limit int64) ([]byte, error) {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("update: bundle ends before %s: %w", want, ErrTampered)
		}
		if err != nil {
			return nil, fmt.Errorf("update: bundle: %w", err)
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
		return io.ReadAll(tr)
	}
	im := &Image{}
	var err error
	if im.Manifest, err = next(ManifestFile, 1<<20); err != nil {
		return nil, err
	}
	if im.Signature, err = next(SignatureFile, 1<<20); err != nil {
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
	for _, f := range im.Parsed.Files {
		if skipped(f.Name) {
			continue
		}
		b, err := next(f.Name, f.Size)
		if err != nil {
			return nil, err
		}
		if err := CheckFile(f, bytes.NewReader(b)); err != nil {
			return nil, err
		}
		im.Files = append(im.Files, ImageFile{Name: f.Name, Data: b})
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
func WriteUpdateDisk(path string, im *Image) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("update: update disk: %w", err)
	}
	defer f.Close()
	h := make([]byte, len(updateDiskMagic))
	if _, err := f.ReadAt(h, 0); err != nil || string(h) != updateDiskMagic {
		return fmt.Errorf("update: %s is not an update disk (no %q header)", path, strings.TrimSpace(updateDiskMagic))
	}
	// Invalidate any earlier bundle first.
	if err := writeHeader(f, "empty"); err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := append([]ImageFile{{ManifestFile, im.Manifest}, {SignatureFile, im.Signature}}, im.Files...)
	for _, file := range files {
		if err := tw.WriteHeader(&tar.Header{Name: file.Name, Mode: 0o644, Size: int64(len(file.Data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		tw.Write(file.Data)
	}
	tw.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() < int64(updateDiskData+buf.Len()) {
		return fmt.Errorf("update: the image (%d bytes) does not fit the update disk %s", buf.Len(), path)
	}
	if _, err := f.WriteAt(buf.Bytes(), updateDiskData); err != nil {
		return fmt.Errorf("update: update disk: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("update: update disk: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return writeHeader(f, fmt.Sprintf("bundle %d %s", buf.Len(), hex.EncodeToString(sum[:])))
}

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
