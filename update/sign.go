package update

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nymote/nymote/appliance/app"
)

// File names of a signed image and of a signing key.
const (
	// ManifestFile is the image's manifest (written by package images).
	ManifestFile = "manifest.json"
	// SignatureFile holds the signature over ManifestFile.
	SignatureFile = "manifest.sig"
	// TrustedKeysPath is where an image built with a key carries the
	// public keys it accepts updates from, in its initramfs.
	TrustedKeysPath = "etc/nymote/trusted-keys"
	// PublicSuffix is added to a key file's name for its public key;
	// ChainSuffix for its endorsements (key rotation).
	PublicSuffix = ".pub"
	ChainSuffix  = ".chain"
)

// Domain separation: what a signature is over starts with one of these, so
// that a manifest signature can never pass for an endorsement or the
// other way round.
const (
	manifestContext    = "nymote image manifest v1\n"
	endorsementContext = "nymote key endorsement v1\n"
)

// Errors callers branch on.
var (
	// ErrUntrusted: the image is not signed by a trusted key (nor by a
	// key a trusted key endorsed), or its signature does not verify.
	ErrUntrusted = errors.New("not signed by a trusted key")
	// ErrTampered: a file of the image is not what its signed manifest
	// says (size or sha256), or is missing.
	ErrTampered = errors.New("does not match its signed manifest")
	// ErrUnsigned: the image has no signature.
	ErrUnsigned = errors.New("not signed (build it with nymote build --sign KEY)")
)

// Signer is a signing key with its endorsement chain: the endorsements
// that lead from an older key to this one (key rotation), oldest first.
type Signer struct {
	Key   ed25519.PrivateKey
	Chain []Endorsement
}

// Public returns the signer's public key.
func (s *Signer) Public() ed25519.PublicKey { return s.Key.Public().(ed25519.PublicKey) }

// Endorsement is an older key's signature over a newer key: whoever trusts
// By trusts Key.
type Endorsement struct {
	Key       string `json:"key"`       // base64 of the endorsed public key
	By        string `json:"by"`        // base64 of the endorsing public key
	Signature string `json:"signature"` // base64, over endorsementContext + Key's bytes
}

// Signature is the content of an image's SignatureFile.
type Signature struct {
	// Key is the base64 public key that signed the manifest.
	Key string `json:"key"`
	// Signature is base64, over manifestContext + the manifest's bytes.
	Signature string `json:"signature"`
	// Chain endorses Key from an older key, oldest first.
	Chain []Endorsement `json:"chain,omitempty"`
}

// EncodeKey is the text form of a public key (base64, standard encoding),
// as in trusted-keys files and manifests.
func EncodeKey(k ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(k) }

// DecodeKey parses EncodeKey's form.
func DecodeKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("update: %q is not a base64 Ed25519 public key", s)
	}
	return ed25519.PublicKey(b), nil
}

// Fingerprint is a short name of a public key: the first 16 hex digits of
// its sha256.
func Fingerprint(k ed25519.PublicKey) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:8])
}

// CreateKey writes a new Ed25519 signing key to path (PKCS #8 PEM, mode
// 0600; an existing file is never replaced) and its public key to
// path+PublicSuffix.
func CreateKey(path string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("update: signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("update: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path+PublicSuffix, []byte(EncodeKey(pub)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	return pub, nil
}

// LoadSigner reads a signing key written by CreateKey, with its chain
// (path+ChainSuffix) if there is one. A key file that others can read is
// refused: it would sign images for anyone on the host.
func LoadSigner(path string) (*Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("update: signing key: %w (create one with: nymote key create %s)", err, path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("update: signing key %s has mode %v: others may read it (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("update: %s is not a PEM private key (made by nymote key create)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("update: %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("update: %s is a %T, not an Ed25519 key", path, k)
	}
	s := &Signer{Key: priv}
	cb, err := os.ReadFile(path + ChainSuffix)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("update: %w", err)
	default:
		if err := json.Unmarshal(cb, &s.Chain); err != nil {
			return nil, fmt.Errorf("update: %s%s: %w", path, ChainSuffix, err)
		}
		if n := len(s.Chain); n == 0 || s.Chain[n-1].Key != EncodeKey(s.Public()) {
			return nil, fmt.Errorf("update: %s%s does not end with this key's endorsement", path, ChainSuffix)
		}
	}
	return s, nil
}

// Rotate endorses the key at newPath with the key at oldPath: it writes
// newPath+ChainSuffix, the old key's chain followed by the old key's
// signature over the new public key. Appliances that trust the old key
// (or any key before it in the chain) then accept images signed by the new
// one, and those images make them trust the new key.
func Rotate(oldPath, newPath string) error {
	old, err := LoadSigner(oldPath)
	if err != nil {
		return err
	}
	nw, err := LoadSigner(newPath)
	if err != nil {
		return err
	}
	if old.Public().Equal(nw.Public()) {
		return errors.New("update: the old and the new key are the same key")
	}
	pub := nw.Public()
	e := Endorsement{Key: EncodeKey(pub), By: EncodeKey(old.Public()),
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(old.Key, append([]byte(endorsementContext), pub...)))}
	chain := append(slices.Clone(old.Chain), e)
	b, err := json.MarshalIndent(chain, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(newPath+ChainSuffix, append(b, '\n'), 0o644)
}

// SignManifest returns the SignatureFile content for manifest.
func (s *Signer) SignManifest(manifest []byte) []byte {
	sig := Signature{Key: EncodeKey(s.Public()), Chain: s.Chain,
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(s.Key, append([]byte(manifestContext), manifest...)))}
	b, _ := json.MarshalIndent(sig, "", "  ")
	return append(b, '\n')
}

// TrustedKeysFile is the content of an image's TrustedKeysPath: one key a
// line, after a comment naming each one's fingerprint.
func TrustedKeysFile(keys []ed25519.PublicKey) []byte {
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "# %s\n%s\n", Fingerprint(k), EncodeKey(k))
	}
	return b.Bytes()
}

// ParseTrustedKeys reads a trusted-keys file (TrustedKeysFile's format;
// blank lines and # comments are skipped).
func ParseTrustedKeys(b []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := DecodeKey(line)
		if err != nil {
			return nil, fmt.Errorf("trusted keys line %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// VerifySignature checks that sig (a SignatureFile) signs manifest with a
// key in trusted, or with a key that a chain of endorsements leads to from
// one in trusted. It returns the signing key.
func VerifySignature(manifest, sig []byte, trusted []ed25519.PublicKey) (ed25519.PublicKey, error) {
	if len(trusted) == 0 {
		return nil, fmt.Errorf("update: %w: no key is trusted (the running image was built without --sign)", ErrUntrusted)
	}
	var s Signature
	if err := json.Unmarshal(sig, &s); err != nil {
		return nil, fmt.Errorf("update: %s: %w: %v", SignatureFile, ErrUntrusted, err)
	}
	signer, err := DecodeKey(s.Key)
	if err != nil {
		return nil, fmt.Errorf("update: %s: %w: %v", SignatureFile, ErrUntrusted, err)
	}
	ok := map[string]bool{}
	for _, k := range trusted {
		ok[string(k)] = true
	}
	// The chain, oldest first: each endorsement counts only if its
	// endorser is trusted by then.
	for i, e := range s.Chain {
		by, err1 := DecodeKey(e.By)
		key, err2 := DecodeKey(e.Key)
		es, err3 := base64.StdEncoding.DecodeString(e.Signature)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("update: %s endorsement %d: %w: %v", SignatureFile, i+1, ErrUntrusted, err)
		}
		if !ok[string(by)] {
			continue
		}
		if !ed25519.Verify(by, append([]byte(endorsementContext), key...), es) {
			return nil, fmt.Errorf("update: %s endorsement %d (of %s by %s): %w: bad signature", SignatureFile, i+1, Fingerprint(key), Fingerprint(by), ErrUntrusted)
		}
		ok[string(key)] = true
	}
	if !ok[string(signer)] {
		return nil, fmt.Errorf("update: image signed by key %s: %w (trusted: %s)", Fingerprint(signer), ErrUntrusted, fingerprints(trusted))
	}
	ms, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil || !ed25519.Verify(signer, append([]byte(manifestContext), manifest...), ms) {
		return nil, fmt.Errorf("update: %s: %w: the signature by %s does not match the manifest", SignatureFile, ErrUntrusted, Fingerprint(signer))
	}
	return signer, nil
}

func fingerprints(keys []ed25519.PublicKey) string {
	var fs []string
	for _, k := range keys {
		fs = append(fs, Fingerprint(k))
	}
	return strings.Join(fs, ", ")
}

// Manifest is what package update reads of an image's manifest: the rest
// is package images'.
type Manifest struct {
	App        string `json:"app"`
	AppVersion string `json:"app_version"`
	Board      string `json:"board"`
	// TrustedKeys are the keys the image accepts updates from (base64).
	TrustedKeys []string `json:"trusted_keys"`
	Files       []File   `json:"files"`
	// DataFormat is the data format the image's code writes, the older
	// ones it reads and the migrations it carries (see CheckFormat); nil
	// for an image from before formats: format 1.
	DataFormat *app.DataFormat `json:"data_format,omitempty"`
}

// File is one artefact of an image.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ParseManifest parses a manifest and checks its file names (plain names,
// no folders: an image is one folder).
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("update: %s: %w", ManifestFile, err)
	}
	for _, f := range m.Files {
		if !validName(f.Name) {
			return nil, fmt.Errorf("update: %s: bad file name %q", ManifestFile, f.Name)
		}
		if f.Size < 0 {
			return nil, fmt.Errorf("update: %s: %s has size %d", ManifestFile, f.Name, f.Size)
		}
	}
	return &m, nil
}

func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\\\x00") && n != ManifestFile && n != SignatureFile
}

// Trusted returns the image's trusted keys.
func (m *Manifest) Trusted() ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, s := range m.TrustedKeys {
		k, err := DecodeKey(s)
		if err != nil {
			return nil, fmt.Errorf("update: %s trusted_keys: %w", ManifestFile, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Version is how status lines name an image: the app's version and a short
// hash of its manifest.
func Version(manifest []byte) string {
	m, err := ParseManifest(manifest)
	sum := sha256.Sum256(manifest)
	h := hex.EncodeToString(sum[:6])
	if err != nil || m.AppVersion == "" {
		return h
	}
	return m.AppVersion + " (" + h + ")"
}

// CheckFile checks that r holds file f of a manifest, reading it whole.
func CheckFile(f File, r io.Reader) error {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, f.Size+1))
	if err != nil {
		return fmt.Errorf("update: reading %s: %w", f.Name, err)
	}
	if n != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		return fmt.Errorf("update: %s: %w", f.Name, ErrTampered)
	}
	return nil
}

// VerifyDir checks the image in dir: its manifest is signed by a key in
// trusted (see VerifySignature) and every file it lists is there, as
// listed. It returns the parsed manifest.
func VerifyDir(dir string, trusted []ed25519.PublicKey) (*Manifest, error) {
	mb, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("update: image %s: %w", dir, err)
	}
	sb, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("update: image %s: %w", dir, ErrUnsigned)
	}
	if err != nil {
		return nil, fmt.Errorf("update: image %s: %w", dir, err)
	}
	if _, err := VerifySignature(mb, sb, trusted); err != nil {
		return nil, fmt.Errorf("image %s: %w", dir, err)
	}
	m, err := ParseManifest(mb)
	if err != nil {
		return nil, err
	}
	if err := checkFiles(dir, m); err != nil {
		return nil, fmt.Errorf("image %s: %w", dir, err)
	}
	return m, nil
}

// checkFiles checks every file of m in dir against the manifest.
func checkFiles(dir string, m *Manifest) error {
	for _, f := range m.Files {
		r, err := os.Open(filepath.Join(dir, f.Name))
		if err != nil {
			return fmt.Errorf("update: %s: %w: %v", f.Name, ErrTampered, err)
		}
		err = CheckFile(f, r)
		r.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
