package images

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/kernel"
	"github.com/nymote/nymote/update"
)

// Manifest describes a built image; Build writes it as manifest.json.
type Manifest struct {
	App        string    `json:"app"`
	AppVersion string    `json:"app_version"`
	Board      string    `json:"board"`
	GOARCH     string    `json:"goarch"`
	GoVersion  string    `json:"go_version"`
	Kernel     KernelRef `json:"kernel"`
	// Cmdline is the kernel command line the image boots with.
	Cmdline string `json:"cmdline"`
	// InitSize is the size of the program (/init, or /init on the code
	// disk); InitramfsSize that of the uncompressed cpio archive.
	InitSize      int64  `json:"init_size"`
	InitramfsSize int64  `json:"initramfs_size"`
	Compression   string `json:"compression"`
	// InitramfsFiles are the paths in the initramfs, sorted.
	InitramfsFiles []string `json:"initramfs_files"`
	// Ports are the app's TCP ports inside the appliance.
	Ports []AppPort `json:"ports"`
	// Ephemeral images serve from memory without a data disk.
	Ephemeral bool `json:"ephemeral,omitempty"`
	// Debug images have u-root's shell and core commands (/bbin) and run
	// the shell on the console.
	Debug bool `json:"debug,omitempty"`
	// TrustedKeys are the public keys (base64 Ed25519) the appliance
	// accepts updates from: the key the image was signed with (see
	// Options.Signer); none for an unsigned image.
	TrustedKeys []string `json:"trusted_keys,omitempty"`
	// CodeDisk is the code disk among Files (CodeDiskFile) of an image
	// whose program is on one, "" when the program is /init in the
	// initramfs; ProgramSHA256 is then the program's SHA-256, baked into
	// the initramfs's stub (/init, StubSize bytes), which refuses a code
	// disk holding another program.
	CodeDisk      string `json:"code_disk,omitempty"`
	ProgramSHA256 string `json:"program_sha256,omitempty"`
	StubSize      int64  `json:"stub_size,omitempty"`
	// Files are the artefacts, sorted by name.
	Files []File `json:"files"`
	// DataFormat is the app's data format (app.App.Data): the version
	// its code writes, the older ones it reads and the migrations it
	// carries, signed with the rest (package update reads it before an
	// update or a rollback).
	DataFormat *app.DataFormat `json:"data_format,omitempty"`
}

// KernelRef names the kernel of an image: a Go module and its version, or
// a Debian package, its version and the sha256 of its .deb.
type KernelRef struct {
	Source  string `json:"source"`
	Module  string `json:"module,omitempty"`
	Package string `json:"package,omitempty"`
	Version string `json:"version"`
	Release string `json:"release"`
	// PackageSHA256 is the sha256 of the Debian package used.
	PackageSHA256 string `json:"package_sha256,omitempty"`
	// Unpinned is set when the pinned Debian package had left the
	// archive and the series' current package was used instead.
	Unpinned bool `json:"unpinned,omitempty"`
}

// File is one artefact.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// File returns the artefact called name.
func (m *Manifest) File(name string) (File, bool) {
	for _, f := range m.Files {
		if f.Name == name {
			return f, true
		}
	}
	return File{}, false
}

func writeManifest(p *plan, k *kernel.Kernel, bin *binary, rd *ramdisk, files []string) (*Manifest, error) {
	m := &Manifest{
		App: p.app.Name, AppVersion: bin.appVersion, Board: p.board.Name, GOARCH: p.board.GOARCH,
		GoVersion: bin.goVersion,
		Kernel: KernelRef{Source: k.Name, Module: k.Module, Package: k.Package, Version: k.Version, Release: k.Release,
			PackageSHA256: k.PackageSHA256, Unpinned: !k.Pinned},
		Cmdline:  joinCmdline(p.cmdline),
		InitSize: int64(len(bin.init)), InitramfsSize: int64(len(rd.cpio)), Compression: rd.format,
		InitramfsFiles: rd.files, Ports: manifestPorts(p.app.Ports), Ephemeral: p.opts.Ephemeral,
		Debug: p.opts.Debug, TrustedKeys: trustedKeys(p), DataFormat: dataFormat(p.app.Data),
	}
	if bin.stub != nil {
		m.CodeDisk, m.ProgramSHA256, m.StubSize = CodeDiskFile, programSum(bin.init), int64(len(bin.stub))
	}
	sort.Strings(files)
	for _, name := range files {
		f, err := hashFile(filepath.Join(p.opts.OutDir, name))
		if err != nil {
			return nil, err
		}
		f.Name = name
		m.Files = append(m.Files, f)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFile(p.opts.OutDir, ManifestFile, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return m, nil
}

func hashFile(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("images: %w", err)
	}
	sum := sha256.Sum256(b)
	return File{Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// ReadManifest reads the manifest.json of a built image in dir.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("images: %w (build the image first: nymote build)", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("images: %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return &m, nil
}

// AppPort is a named TCP port of the app in a manifest (app.Port's name
// and number: what a launcher forwards).
type AppPort struct {
	Name string
	Port int
}

func manifestPorts(ps []app.Port) []AppPort {
	var out []AppPort
	for _, p := range ps {
		out = append(out, AppPort{Name: p.Name, Port: p.Port})
	}
	return out
}

// trustedKeys are the keys an image built by p trusts (base64).
func trustedKeys(p *plan) []string {
	if p.opts.Signer == nil {
		return nil
	}
	return []string{update.EncodeKey(p.opts.Signer.Public())}
}

// signManifest writes manifest.sig, the signature over the manifest just
// written, or removes a stale one when the image is not signed.
func signManifest(p *plan) error {
	if p.opts.Signer == nil {
		if err := os.Remove(filepath.Join(p.opts.OutDir, update.SignatureFile)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("images: %w", err)
		}
		return nil
	}
	mb, err := os.ReadFile(filepath.Join(p.opts.OutDir, ManifestFile))
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return writeFile(p.opts.OutDir, update.SignatureFile, p.opts.Signer.SignManifest(mb), 0o644)
}

// dataFormat is the manifest's data_format: the app's declaration, with
// its version spelled out.
func dataFormat(f app.DataFormat) *app.DataFormat {
	f.Version = f.Current()
	return &f
}
