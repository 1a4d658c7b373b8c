package appliance

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/internal/selfcert"
	"github.com/nymote/nymote/update"
)

// updatePort is the runtime's update port (app.UpdatePort): an HTTPS
// server with update.Receiver, opened when the launcher attached an
// update disk (nymote.updatedisk). Its certificate is made at each boot;
// the console prints its fingerprint.
type updatePort struct {
	srv  *http.Server
	mu   sync.Mutex
	auth func(user, password string) error
}

// setAuth is Env.SetUpdateAuth.
func (u *updatePort) setAuth(check func(user, password string) error) {
	u.mu.Lock()
	u.auth = check
	u.mu.Unlock()
}

func (u *updatePort) check(user, password string) error {
	u.mu.Lock()
	check := u.auth
	u.mu.Unlock()
	if check == nil {
		return errors.New("the service has not said who its administrators are")
	}
	return check(user, password)
}

// findUpdateDisk returns the update disk: dev, or with "auto" the first
// block device with an update disk's header.
func findUpdateDisk(dev string) (string, error) {
	if dev != "auto" {
		if !update.IsUpdateDisk(dev) {
			return "", fmt.Errorf("%s is not an update disk", dev)
		}
		return dev, nil
	}
	names, _ := os.ReadDir("/sys/class/block")
	for _, n := range names {
		name := n.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
			continue
		}
		if _, err := os.Stat(filepath.Join("/sys/class/block", name, "partition")); err == nil {
			continue
		}
		if p := "/dev/" + name; update.IsUpdateDisk(p) {
			return p, nil
		}
	}
	return "", errors.New("no block device has an update disk's header")
}

// updateDiskSink returns the sink of a host-booted appliance: the update
// disk (nymote.updatedisk), written as the bundle arrives (an image of the
// mail app is about 32 MiB, more than a 64 MiB appliance can hold beside
// its heap), and its description.
func updateDiskSink(cfg bootConfig) (func(*update.Image) (update.BundleSink, error), string, error) {
	disk, err := findUpdateDisk(cfg.updateDisk)
	if err != nil {
		return nil, "", err
	}
	return func(*update.Image) (update.BundleSink, error) { return update.OpenUpdateDisk(disk) }, "update disk " + disk, nil
}

// startUpdatePort serves updates on nw at addr's app.UpdatePort: verified
// against the image's trusted keys and the data format of dataDir, handed
// to stream as they arrive or, when it is nil, to sink once verified
// (where, says where), then reboot is called.
func startUpdatePort(nw Network, addr netip.Addr, dataDir string, sink func(*update.Image) error, stream func(*update.Image) (update.BundleSink, error), where string, reboot func(), say func(string, ...any), log *slog.Logger) (*updatePort, error) {
	kb, err := os.ReadFile("/" + update.TrustedKeysPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errors.New("the image trusts no key (built without --sign): it takes no updates")
	}
	if err != nil {
		return nil, err
	}
	trusted, err := update.ParseTrustedKeys(kb)
	if err != nil {
		return nil, err
	}
	cert, fp, err := loadUpdateCert(dataDir, addr, say)
	if err != nil {
		return nil, err
	}
	u := &updatePort{}
	rc := &update.Receiver{Trusted: trusted, Authorize: update.BasicAuth(u.check), Log: log,
		Sink:   sink,
		Stream: stream,
		Reboot: reboot,
		// An image that could not serve the data as it is now
		// (an older format, or one it cannot read) is refused.
		DiskFormat: func() (int, error) {
			f, err := update.ReadDiskFormat(dataDir)
			return f.Least(), err
		}}
	l, err := nw.Listen("tcp", net.JoinHostPort(addr.String(), itoa(app.UpdatePort.Port)))
	if err != nil {
		return nil, err
	}
	u.srv = &http.Server{Handler: rc, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 20 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go u.srv.ServeTLS(l, "", "")
	say("updates on %s (%s), certificate sha256 %s", l.Addr(), where, fp)
	return u, nil
}

// UpdateCertFile is the update port's key and certificate (PEM), a node
// file on the data disk: kept out of the store's history and out of
// images, and the same across boots and updates, so that the fingerprint a
// person pins (nymote update --fingerprint) stays valid.
const UpdateCertFile = "node/update-tls.pem"

// loadUpdateCert returns the update port's certificate and its sha256
// fingerprint (hex): the one in dataDir's UpdateCertFile, or a new one
// written there (a damaged file is replaced, and said). Without a data
// directory the certificate is made for this boot only.
func loadUpdateCert(dataDir string, addr netip.Addr, say func(string, ...any)) (tls.Certificate, string, error) {
	var pemData []byte
	if dataDir != "" {
		b, err := os.ReadFile(filepath.Join(dataDir, filepath.FromSlash(UpdateCertFile)))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return tls.Certificate{}, "", err
		}
		pemData = b
	}
	if pemData != nil {
		cert, err := tls.X509KeyPair(pemData, pemData)
		if err == nil {
			return cert, certFingerprint(cert), nil
		}
		say("the update port's certificate in %s is damaged (%v): making a new one", UpdateCertFile, err)
	}
	certPEM, keyPEM, err := selfcert.Make([]string{addr.String(), "localhost"})
	if err != nil {
		return tls.Certificate{}, "", err
	}
	if dataDir != "" {
		if err := update.WriteNodeFile(dataDir, UpdateCertFile, append(keyPEM, certPEM...)); err != nil {
			return tls.Certificate{}, "", err
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	return cert, certFingerprint(cert), nil
}

// certFingerprint is the sha256 of cert's DER, in hex (what nymote update
// --fingerprint pins).
func certFingerprint(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Certificate[0])
	return hex.EncodeToString(sum[:])
}

// close stops the update port.
func (u *updatePort) close() {
	if u != nil {
		u.srv.Close()
	}
}
