package appliance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nymote/nymote/appliance/app"
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
// disk (nymote.updatedisk), and its description.
func updateDiskSink(cfg bootConfig) (func(*update.Image) error, string, error) {
	disk, err := findUpdateDisk(cfg.updateDisk)
	if err != nil {
		return nil, "", err
	}
	return func(im *update.Image) error { return update.WriteUpdateDisk(disk, im) }, "update disk " + disk, nil
}

// startUpdatePort serves updates on nw at addr's app.UpdatePort: verified
// against the image's trusted keys and the data format of dataDir, handed
// to sink (where, says where), then reboot is called.
func startUpdatePort(nw Network, addr netip.Addr, dataDir string, sink func(*update.Image) error, where string, reboot func(), say func(string, ...any), log *slog.Logger) (*updatePort, error) {
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
// fingerprint: the one in dataDir's UpdateCertFile, or a new one written
// there (a damaged file is replaced, and said). Without a data directory
// the certificate is made for this boot only.
func loadUpdateCert(dataDir string, addr netip.Addr, say func(string, ...any)) (tls.Certificate, string, error) {
	if dataDir == "" {
		return updateCert(addr)
	}
	path := filepath.Join(dataDir, filepath.FromSlash(UpdateCertFile))
	if b, err := os.ReadFile(path); err == nil {
		cert, err := tls.X509KeyPair(b, b)
		if err == nil {
			sum := sha256.Sum256(cert.Certificate[0])
			return cert, hex.EncodeToString(sum[:]), nil
		}
		say("the update port's certificate in %s is damaged (%v): making a new one", UpdateCertFile, err)
	} else if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, "", err
	}
	cert, fp, err := updateCert(addr)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	kd, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})...)
	if err := update.WriteNodeFile(dataDir, UpdateCertFile, pemData); err != nil {
		return tls.Certificate{}, "", err
	}
	return cert, fp, nil
}

// updateCert makes the update port's self-signed certificate and returns
// it with its sha256 fingerprint (hex).
func updateCert(addr netip.Addr) (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nymote update"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IPAddresses: []net.IP{addr.AsSlice()}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	sum := sha256.Sum256(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, hex.EncodeToString(sum[:]), nil
}

// close stops the update port.
func (u *updatePort) close() {
	if u != nil {
		u.srv.Close()
	}
}
