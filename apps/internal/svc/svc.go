// Package svc holds what every Nymote service program shares: opening (or
// creating) the store of a data directory, and TLS configuration with a
// self-signed certificate kept among the node's secrets (outside the
// replicated store) when none is given.
//
// It is the one package of program glue. The rest has one place each: an
// app's descriptor (name, ports, host defaults) is data in package
// appliance/app; what makes a process PID 1, the poweroff helper or a host
// process, the signals and the host network flags is the runtime's
// (appliance.Main); an app's own service package (mailsvc, davapp for
// contacts and calendar) gives its appliance.Service: Serve as PID 1 and
// its host-mode flags.
package svc

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/nymote/nymote/internal/selfcert"
	"github.com/nymote/nymote/store"
)

// OpenStore opens the store of data directory dir, creating it (and dir) on
// first use. A nil log discards the logs.
func OpenStore(dir string, log *slog.Logger) (*store.Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if dir == "" {
		return nil, errors.New("no data directory given (--data)")
	}
	s, err := store.OpenData(dir, store.Options{Logger: log})
	if errors.Is(err, store.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		log.Info("creating a new store", "data", dir)
		return store.InitData(dir, store.Options{Logger: log})
	}
	return s, err
}

// Names of the generated certificate and key among the node's secrets
// (store.Store.ReadNodeFile): files in the data directory's node/ folder,
// outside the store's repository, so that they are never committed, cloned
// or replicated (each node has its own key). Stores of earlier versions
// kept them in the store under the same paths; opening such a store moves
// them here and out of its history.
const (
	CertPath = "tls/cert.pem"
	KeyPath  = "tls/key.pem"
)

// TLSOptions say where the certificate comes from.
type TLSOptions struct {
	// CertFile and KeyFile are PEM files. If both are empty, a self-signed
	// certificate is generated into the node's secrets on first use (and
	// reused).
	CertFile, KeyFile string
	// Hostnames go into a generated certificate (DNS names or IP
	// addresses). Empty means "localhost".
	Hostnames []string
}

// TLSConfig returns a server TLS configuration (TLS 1.2 or later) and the
// certificate's SHA-256 fingerprint, which callers print so that users can
// check what their clients are shown. The private key is never logged.
func TLSConfig(ctx context.Context, s *store.Store, opts TLSOptions, log *slog.Logger) (*tls.Config, string, error) {
	var cert tls.Certificate
	var err error
	switch {
	case opts.CertFile != "" && opts.KeyFile != "":
		cert, err = tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("tls: loading %s and %s: %w", opts.CertFile, opts.KeyFile, err)
		}
	case opts.CertFile != "" || opts.KeyFile != "":
		return nil, "", errors.New("tls: give both --tls-cert and --tls-key, or neither (for a generated certificate)")
	default:
		cert, err = storedCert(s, opts.Hostnames, log)
		if err != nil {
			return nil, "", err
		}
	}
	sum := sha256.Sum256(cert.Certificate[0])
	fp := fingerprint(sum[:])
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, fp, nil
}

func fingerprint(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

// storedCert loads the generated certificate from the node's secrets,
// generating it on first use.
func storedCert(s *store.Store, hosts []string, log *slog.Logger) (tls.Certificate, error) {
	certPEM, err1 := s.ReadNodeFile(CertPath)
	keyPEM, err2 := s.ReadNodeFile(KeyPath)
	if err1 == nil && err2 == nil {
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("tls: the node's certificate (%s, %s in %s) is unusable: %w", CertPath, KeyPath, s.NodeDir(), err)
		}
		return c, nil
	}
	for _, err := range []error{err1, err2} {
		if err != nil && !errors.Is(err, store.ErrNotExist) {
			return tls.Certificate{}, err
		}
	}
	certPEM, keyPEM, err := selfcert.Make(hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	// The key first: a crash between the two leaves no certificate, and
	// the next start generates both again.
	if err := s.WriteNodeFile(KeyPath, keyPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: %w", err)
	}
	if err := s.WriteNodeFile(CertPath, certPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: %w", err)
	}
	log.Info("tls: generated a self-signed certificate", "hosts", hosts, "dir", s.NodeDir())
	return tls.X509KeyPair(certPEM, keyPEM)
}

// AdminCheck checks the name and password of an administrator of store s:
// a user with git write access (who can rewrite the whole store anyway).
// It is what an appliance's update port asks (appliance.Env.SetUpdateAuth).
func AdminCheck(s *store.Store) func(user, password string) error {
	return func(user, password string) error {
		u, err := s.Authenticate(user, password)
		if err != nil {
			return err
		}
		if u.Git != store.GitWrite {
			return fmt.Errorf("%s is not an administrator of the store (git write access)", user)
		}
		return nil
	}
}
