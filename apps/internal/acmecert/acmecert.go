// Package acmecert obtains and renews a service's TLS certificate from an
// ACME CA (RFC 8555: Let's Encrypt, or a test CA such as Pebble), answering
// the CA's tls-alpn-01 challenges (RFC 8737) on the HTTPS port and its
// http-01 challenges on the HTTP port: both are tried, tls-alpn-01 first.
// The account key, the certificate and its key are node files (never
// committed or replicated). Manager.Run renews the certificate when two
// thirds of its lifetime are gone, without a restart: new handshakes get
// the new certificate, open connections keep theirs. Until a certificate
// is obtained, or when the CA cannot be reached, handshakes get the
// fallback (the self-signed certificate), and the console says so.
package acmecert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/nymote/nymote/store"
)

// LetsEncrypt is the default directory URL.
const LetsEncrypt = acme.LetsEncryptURL

// Node file names.
const (
	AccountKeyPath = "acme/account.pem"
	CertPath       = "acme/cert.pem"
	KeyPath        = "acme/key.pem"
)

// NodeFiles are where the keys and certificate are kept: a *store.Store's
// node secrets.
type NodeFiles interface {
	ReadNodeFile(name string) ([]byte, error)
	WriteNodeFile(name string, data []byte) error
}

// Options configure a Manager.
type Options struct {
	// DirectoryURL is the CA's ACME directory; "" is LetsEncrypt.
	DirectoryURL string
	// Email is the account's contact address (optional).
	Email string
	// Names go on the certificate (the first is its subject).
	Names []string
	// Files keep the account key and the certificate (required).
	Files NodeFiles
	// HTTPClient talks to the CA; nil: http.DefaultClient. Tests give one
	// that trusts the test CA's own certificate.
	HTTPClient *http.Client
	// Fallback is served until a certificate is obtained.
	Fallback *tls.Certificate
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Console receives the lines a person should see (certificate
	// obtained, renewed, or the fallback in use), prefixed by Prefix.
	Console io.Writer
	Prefix  string
	// RetryMin and RetryMax bound the wait after a failed attempt
	// (doubling); zero: one minute and one hour.
	RetryMin, RetryMax time.Duration
}

// Manager holds the certificate.
type Manager struct {
	o      Options
	log    *slog.Logger
	client *acme.Client

	cert atomic.Pointer[tls.Certificate]

	mu     sync.Mutex
	alpn   map[string]*tls.Certificate // tls-alpn-01 certificates by name
	tokens map[string]string           // http-01 responses by path

	// Validated counts the challenges answered, by type (for tests and
	// the log): "tls-alpn-01", "http-01".
	validated sync.Map
}

// New returns a Manager; a certificate already among the node files is
// served at once.
func New(o Options) (*Manager, error) {
	if len(o.Names) == 0 {
		return nil, errors.New("acme: no names for the certificate")
	}
	if o.Files == nil {
		return nil, errors.New("acme: nowhere to keep the certificate")
	}
	if o.DirectoryURL == "" {
		o.DirectoryURL = LetsEncrypt
	}
	if o.RetryMin == 0 {
		o.RetryMin = time.Minute
	}
	if o.RetryMax == 0 {
		o.RetryMax = time.Hour
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{o: o, log: log, alpn: map[string]*tls.Certificate{}, tokens: map[string]string{}}
	if c, err := m.stored(); err == nil && m.covers(c) {
		m.cert.Store(c)
	}
	return m, nil
}

// Certificate returns the certificate being served (nil: the fallback).
func (m *Manager) Certificate() *tls.Certificate { return m.cert.Load() }

// Validated returns how many challenges of type typ were answered.
func (m *Manager) Validated(typ string) int64 {
	v, ok := m.validated.Load(typ)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func (m *Manager) count(typ string) {
	v, _ := m.validated.LoadOrStore(typ, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// GetCertificate is a tls.Config's GetCertificate: the tls-alpn-01
// challenge certificate for the CA's validation handshakes, else the
// certificate (or the fallback).
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
		m.mu.Lock()
		c := m.alpn[strings.ToLower(hello.ServerName)]
		m.mu.Unlock()
		if c == nil {
			return nil, fmt.Errorf("acme: no tls-alpn-01 challenge for %q", hello.ServerName)
		}
		m.count("tls-alpn-01")
		m.log.Info("acme: answering a tls-alpn-01 validation", "name", hello.ServerName)
		return c, nil
	}
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	if m.o.Fallback != nil {
		return m.o.Fallback, nil
	}
	return nil, errors.New("acme: no certificate yet")
}

// TLSConfig returns a copy of base that serves the Manager's certificates
// and offers the acme-tls/1 protocol.
func (m *Manager) TLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.Certificates = nil
	c.GetCertificate = m.GetCertificate
	if !slices.Contains(c.NextProtos, acme.ALPNProto) {
		c.NextProtos = append(c.NextProtos, acme.ALPNProto)
	}
	return c
}

// HTTPHandler answers http-01 challenges under
// /.well-known/acme-challenge/ (guard.RedirectHTTPS's acme hook).
func (m *Manager) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		resp, ok := m.tokens[r.URL.Path]
		m.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		m.count("http-01")
		m.log.Info("acme: answering an http-01 validation", "host", r.Host)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, resp)
	})
}

func (m *Manager) stored() (*tls.Certificate, error) {
	cp, err := m.o.Files.ReadNodeFile(CertPath)
	if err != nil {
		return nil, err
	}
	kp, err := m.o.Files.ReadNodeFile(KeyPath)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		return nil, fmt.Errorf("acme: the stored certificate is unusable: %w", err)
	}
	return &c, nil
}

// covers reports whether c names every name and is not expired.
func (m *Manager) covers(c *tls.Certificate) bool {
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return false
		}
	}
	if time.Now().After(leaf.NotAfter) {
		return false
	}
	for _, n := range m.o.Names {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

// renewAt is when c is renewed: two thirds into its lifetime.
func renewAt(c *tls.Certificate) time.Time {
	leaf := c.Leaf
	if leaf == nil {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(life * 2 / 3)
}

// Run obtains the certificate when there is none (or it no longer names
// every name), renews it two thirds into its lifetime, and retries failed
// attempts with a doubling wait, until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	wait := m.o.RetryMin
	for {
		next := time.Now()
		if c := m.cert.Load(); c != nil {
			next = renewAt(c)
		}
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		renewal := m.cert.Load() != nil
		err := m.obtain(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			m.log.Error("acme: obtaining a certificate", "dir", m.o.DirectoryURL, "names", m.o.Names, "err", err)
			what := "serving the self-signed certificate"
			if renewal {
				what = "serving the current certificate"
			}
			fmt.Fprintf(m.o.Console, "%sacme certificate from %s failed (%v): %s; trying again in %s\n", m.o.Prefix, m.o.DirectoryURL, err, what, wait)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			wait = min(wait*2, m.o.RetryMax)
			continue
		}
		wait = m.o.RetryMin
		c := m.cert.Load()
		verb := "obtained"
		if renewal {
			verb = "renewed"
		}
		fmt.Fprintf(m.o.Console, "%sacme certificate %s from %s for %s, valid until %s\n", m.o.Prefix, verb, m.o.DirectoryURL,
			strings.Join(m.o.Names, ", "), c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
}

func (m *Manager) acmeClient(ctx context.Context) (*acme.Client, error) {
	if m.client != nil {
		return m.client, nil
	}
	key, err := m.accountKey()
	if err != nil {
		return nil, err
	}
	c := &acme.Client{Key: key, DirectoryURL: m.o.DirectoryURL, HTTPClient: m.o.HTTPClient, UserAgent: "nymote"}
	acct := &acme.Account{}
	if m.o.Email != "" {
		acct.Contact = []string{"mailto:" + m.o.Email}
	}
	if _, err := c.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("registering the account: %w", err)
	}
	m.client = c
	return c, nil
}

func (m *Manager) accountKey() (crypto.Signer, error) {
	b, err := m.o.Files.ReadNodeFile(AccountKeyPath)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("acme: %s is not PEM", AccountKeyPath)
		}
		return x509.ParseECPrivateKey(blk.Bytes)
	}
	if !errors.Is(err, store.ErrNotExist) {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := m.o.Files.WriteNodeFile(AccountKeyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return nil, err
	}
	return k, nil
}

// obtain runs one order: every authorization by tls-alpn-01, else (a new
// order) by http-01; then the certificate, stored and served.
func (m *Manager) obtain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := m.acmeClient(ctx)
	if err != nil {
		return err
	}
	var errs []error
	var order *acme.Order
	for _, typ := range []string{"tls-alpn-01", "http-01"} {
		order, err = m.authorize(ctx, c, typ)
		if err == nil {
			break
		}
		errs = append(errs, fmt.Errorf("%s: %w", typ, err))
		order = nil
	}
	if order == nil {
		return errors.Join(errs...)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: m.o.Names[0]}, DNSNames: m.o.Names}, key)
	if err != nil {
		return err
	}
	der, _, err := c.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		return fmt.Errorf("finalizing the order: %w", err)
	}
	var chain []byte
	for _, d := range der {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	cert, err := tls.X509KeyPair(chain, keyPEM)
	if err != nil {
		return fmt.Errorf("the CA's certificate: %w", err)
	}
	if !m.covers(&cert) {
		return errors.New("the CA's certificate does not name every name, or has expired")
	}
	// The key first: a crash between the two leaves a key that matches no
	// certificate, and the next start orders again.
	if err := m.o.Files.WriteNodeFile(KeyPath, keyPEM); err != nil {
		return err
	}
	if err := m.o.Files.WriteNodeFile(CertPath, chain); err != nil {
		return err
	}
	m.cert.Store(&cert)
	return nil
}

// authorize makes an order and satisfies its authorizations by typ.
func (m *Manager) authorize(ctx context.Context, c *acme.Client, typ string) (*acme.Order, error) {
	o, err := c.AuthorizeOrder(ctx, acme.DomainIDs(m.o.Names...))
	if err != nil {
		return nil, fmt.Errorf("ordering: %w", err)
	}
	var cleanups []func()
	defer func() {
		for _, f := range cleanups {
			f()
		}
	}()
	for _, u := range o.AuthzURLs {
		z, err := c.GetAuthorization(ctx, u)
		if err != nil {
			return nil, err
		}
		if z.Status != acme.StatusPending {
			continue
		}
		var chal *acme.Challenge
		for _, ch := range z.Challenges {
			if ch.Type == typ {
				chal = ch
			}
		}
		if chal == nil {
			return nil, fmt.Errorf("the CA offers no %s challenge for %s", typ, z.Identifier.Value)
		}
		name := strings.ToLower(z.Identifier.Value)
		switch typ {
		case "tls-alpn-01":
			cert, err := c.TLSALPN01ChallengeCert(chal.Token, name)
			if err != nil {
				return nil, err
			}
			m.mu.Lock()
			m.alpn[name] = &cert
			m.mu.Unlock()
			cleanups = append(cleanups, func() { m.mu.Lock(); delete(m.alpn, name); m.mu.Unlock() })
		case "http-01":
			resp, err := c.HTTP01ChallengeResponse(chal.Token)
			if err != nil {
				return nil, err
			}
			p := c.HTTP01ChallengePath(chal.Token)
			m.mu.Lock()
			m.tokens[p] = resp
			m.mu.Unlock()
			cleanups = append(cleanups, func() { m.mu.Lock(); delete(m.tokens, p); m.mu.Unlock() })
		}
		if _, err := c.Accept(ctx, chal); err != nil {
			return nil, fmt.Errorf("accepting the %s challenge for %s: %w", typ, name, err)
		}
		if _, err := c.WaitAuthorization(ctx, z.URI); err != nil {
			return nil, fmt.Errorf("%s validation of %s: %w", typ, name, err)
		}
	}
	ready, err := c.WaitOrder(ctx, o.URI)
	if err != nil {
		return nil, fmt.Errorf("waiting for the order: %w", err)
	}
	// The order as fetched may lack its own URL and finalize URL.
	if ready.URI == "" {
		ready.URI = o.URI
	}
	if ready.FinalizeURL == "" {
		ready.FinalizeURL = o.FinalizeURL
	}
	return ready, nil
}
