// Package msgauth is the mail app's message authentication: DKIM keys per
// domain kept among the node's secrets (Keyring), DKIM signing of outbound
// mail (Keyring.Sign), the DNS records a domain needs (Records), and the
// checks of inbound mail (Checker: SPF, DKIM and DMARC, giving one
// Authentication-Results header and what to do with the message).
//
// DKIM keys: each domain has an Ed25519 and an RSA-2048 key (RFC 8463:
// verifiers that know only RSA use the RSA signature), made on first use.
// Rotate makes a new pair that is published at once and signs from
// RotationDelay after it was made (time for the new DNS records to reach
// every resolver); the pair it replaces stays published for RetainFor
// after that (mail in transit still verifies), then leaves the records.
// Keys are node files (store.Store.WriteNodeFile): never committed or
// replicated.
package msgauth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nymote/nymote/store"
)

// NodeFiles are where keys are kept: a *store.Store's node secrets.
type NodeFiles interface {
	ReadNodeFile(name string) ([]byte, error)
	WriteNodeFile(name string, data []byte) error
}

// Rotation timing (see the package comment).
const (
	RotationDelay = 3 * 24 * time.Hour
	RetainFor     = 7 * 24 * time.Hour
)

// Key algorithms.
const (
	Ed25519 = "ed25519"
	RSA     = "rsa"
)

// RSABits is the size of generated RSA keys.
const RSABits = 2048

// Key is one DKIM key of a domain.
type Key struct {
	Selector  string    `json:"selector"`
	Algorithm string    `json:"algorithm"` // Ed25519 or RSA
	Created   time.Time `json:"created"`

	signer crypto.Signer
}

// TXT is the key's DKIM record (RFC 6376 3.6.1), published at
// SELECTOR._domainkey.DOMAIN.
func (k Key) TXT() string {
	var p string
	switch pub := k.signer.Public().(type) {
	case ed25519.PublicKey:
		p = base64.StdEncoding.EncodeToString(pub)
	default:
		der, _ := x509.MarshalPKIXPublicKey(pub)
		p = base64.StdEncoding.EncodeToString(der)
	}
	return "v=DKIM1; k=" + k.Algorithm + "; p=" + p
}

// Keyring holds the DKIM keys of the local domains.
type Keyring struct {
	files NodeFiles
	now   func() time.Time

	mu   sync.Mutex
	keys map[string][]Key // by domain, oldest first
}

// NewKeyring returns the keyring kept in files. now, if nil, is time.Now.
func NewKeyring(files NodeFiles, now func() time.Time) *Keyring {
	if now == nil {
		now = time.Now
	}
	return &Keyring{files: files, now: now, keys: map[string][]Key{}}
}

func indexPath(domain string) string { return "dkim/" + domain + "/keys.json" }
func keyPath(domain, selector string) string {
	return "dkim/" + domain + "/" + selector + ".pem"
}

// validDomain refuses what cannot be a domain name (and so a node file
// path): empty, too long, or with characters outside [a-z0-9.-].
func validDomain(d string) error {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.Contains(d, "..") {
		return fmt.Errorf("dkim: bad domain %q", d)
	}
	for _, c := range d {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("dkim: bad domain %q", d)
		}
	}
	return nil
}

// Keys returns domain's keys, oldest first, making the first pair if it
// has none.
func (kr *Keyring) Keys(domain string) ([]Key, error) {
	domain = strings.ToLower(domain)
	if err := validDomain(domain); err != nil {
		return nil, err
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	return kr.keysLocked(domain, true)
}

// Load reads domain's keys if it has any (for LookupTXT), making none.
func (kr *Keyring) Load(domain string) error {
	domain = strings.ToLower(domain)
	if err := validDomain(domain); err != nil {
		return err
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	_, err := kr.keysLocked(domain, false)
	return err
}

func (kr *Keyring) keysLocked(domain string, create bool) ([]Key, error) {
	if ks, ok := kr.keys[domain]; ok {
		return ks, nil
	}
	b, err := kr.files.ReadNodeFile(indexPath(domain))
	if errors.Is(err, store.ErrNotExist) {
		if !create {
			return nil, nil
		}
		ks, err := kr.generateLocked(domain, nil)
		if err != nil {
			return nil, err
		}
		return ks, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	var ks []Key
	if err := json.Unmarshal(b, &ks); err != nil {
		return nil, fmt.Errorf("dkim: the key list of %s (%s) is unreadable: %w", domain, indexPath(domain), err)
	}
	for i := range ks {
		pb, err := kr.files.ReadNodeFile(keyPath(domain, ks[i].Selector))
		if err != nil {
			return nil, fmt.Errorf("dkim: key %s of %s: %w", ks[i].Selector, domain, err)
		}
		blk, _ := pem.Decode(pb)
		if blk == nil {
			return nil, fmt.Errorf("dkim: key %s of %s: not PEM", ks[i].Selector, domain)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("dkim: key %s of %s: %w", ks[i].Selector, domain, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("dkim: key %s of %s: %T is no signer", ks[i].Selector, domain, k)
		}
		ks[i].signer = s
	}
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].Created.Before(ks[j].Created) })
	kr.keys[domain] = ks
	return ks, nil
}

// generateLocked makes a new Ed25519 and RSA pair for domain after ks and
// writes the keys, then the list.
func (kr *Keyring) generateLocked(domain string, ks []Key) ([]Key, error) {
	now := kr.now().UTC().Truncate(time.Second)
	used := map[string]bool{}
	for _, k := range ks {
		used[k.Selector] = true
	}
	// Selectors name the algorithm and the day: ed20261205, rsa20261205,
	// then ed20261205b... for another pair the same day.
	suffix := ""
	for c := 'b'; used["ed"+now.Format("20060102")+suffix] || used["rsa"+now.Format("20060102")+suffix]; c++ {
		suffix = string(c)
	}
	out := append([]Key{}, ks...)
	for _, alg := range []string{Ed25519, RSA} {
		var signer crypto.Signer
		var err error
		prefix := "ed"
		if alg == Ed25519 {
			_, signer, err = ed25519.GenerateKey(rand.Reader)
		} else {
			prefix = "rsa"
			signer, err = rsa.GenerateKey(rand.Reader, RSABits)
		}
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(signer)
		if err != nil {
			return nil, err
		}
		k := Key{Selector: prefix + now.Format("20060102") + suffix, Algorithm: alg, Created: now, signer: signer}
		if err := kr.files.WriteNodeFile(keyPath(domain, k.Selector), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
			return nil, fmt.Errorf("dkim: %w", err)
		}
		out = append(out, k)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := kr.files.WriteNodeFile(indexPath(domain), b); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	kr.keys[domain] = out
	return out, nil
}

// Rotate makes a new key pair for domain (see the package comment) and
// returns all its keys.
func (kr *Keyring) Rotate(domain string) ([]Key, error) {
	domain = strings.ToLower(domain)
	if err := validDomain(domain); err != nil {
		return nil, err
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	ks, err := kr.keysLocked(domain, true)
	if err != nil {
		return nil, err
	}
	return kr.generateLocked(domain, ks)
}

// state sorts ks (oldest first) into the keys that sign now (one per
// algorithm) and the keys to publish.
func state(ks []Key, now time.Time) (signing, published []Key) {
	for _, alg := range []string{Ed25519, RSA} {
		var mine []Key
		for _, k := range ks {
			if k.Algorithm == alg {
				mine = append(mine, k)
			}
		}
		if len(mine) == 0 {
			continue
		}
		// The active key: the newest one past its delay; the first key
		// has no predecessor and signs at once.
		active := 0
		for i := 1; i < len(mine); i++ {
			if !now.Before(mine[i].Created.Add(RotationDelay)) {
				active = i
			}
		}
		signing = append(signing, mine[active])
		for i, k := range mine {
			switch {
			case i >= active:
				published = append(published, k) // active, or waiting for its turn
			default:
				// Superseded when its successor became active.
				end := mine[i+1].Created.Add(RotationDelay)
				if now.Before(end.Add(RetainFor)) {
					published = append(published, k)
				}
			}
		}
	}
	return signing, published
}

// Published returns the keys of domain whose records must be in DNS now.
func (kr *Keyring) Published(domain string) ([]Key, error) {
	ks, err := kr.Keys(domain)
	if err != nil {
		return nil, err
	}
	_, pub := state(ks, kr.now())
	return pub, nil
}

// PublishedIfAny is Published for a reader that must make no key (jitsu
// serving the records from another process's data): a domain without keys
// gives none, and nothing is written.
func (kr *Keyring) PublishedIfAny(domain string) ([]Key, error) {
	domain = strings.ToLower(domain)
	if err := validDomain(domain); err != nil {
		return nil, err
	}
	kr.mu.Lock()
	ks, err := kr.keysLocked(domain, false)
	kr.mu.Unlock()
	if err != nil {
		return nil, err
	}
	_, pub := state(ks, kr.now())
	return pub, nil
}

// ReadOnlyFiles are the node files of the data directory dataDir (its
// node/ folder, store.Store.NodeDir) read without opening the store, for
// a process that reads another one's keys: writes fail.
type ReadOnlyFiles string

// ReadNodeFile reads the node file name; one that does not exist gives
// store.ErrNotExist.
func (d ReadOnlyFiles) ReadNodeFile(name string) ([]byte, error) {
	if err := store.ValidatePath(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(string(d), "node", filepath.FromSlash(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("node file %s of %s: %w", name, string(d), store.ErrNotExist)
	}
	return b, err
}

// WriteNodeFile fails: the files are read only.
func (d ReadOnlyFiles) WriteNodeFile(name string, _ []byte) error {
	return fmt.Errorf("node file %s of %s: read only here", name, string(d))
}

// Signing returns the keys domain's mail is signed with now.
func (kr *Keyring) Signing(domain string) ([]Key, error) {
	ks, err := kr.Keys(domain)
	if err != nil {
		return nil, err
	}
	sig, _ := state(ks, kr.now())
	return sig, nil
}

// LookupTXT answers DKIM key queries (SELECTOR._domainkey.DOMAIN) for the
// keyring's published keys without DNS; ok is false for other names, and
// for domains the keyring has no keys of (it makes none).
func (kr *Keyring) LookupTXT(name string) (txt []string, ok bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	sel, domain, found := strings.Cut(name, "._domainkey.")
	if !found {
		return nil, false
	}
	kr.mu.Lock()
	ks, have := kr.keys[domain]
	kr.mu.Unlock()
	if !have {
		return nil, false
	}
	_, pub := state(ks, kr.now())
	for _, k := range pub {
		if k.Selector == sel {
			return []string{k.TXT()}, true
		}
	}
	return nil, true // ours, but no such selector: no record
}
