package images

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/internal/pebbletest"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/store"
)

// TestBootMailACME boots the mail appliance under QEMU (TCG) with
// nymote.acme pointing at Pebble (Let's Encrypt's test CA, built from the
// Go module proxy as the mail service's host test does) running on the
// host, which the appliance reaches at 10.0.2.2 through QEMU's user
// network. Pebble's own HTTPS certificate is for 10.0.2.2 from a test CA
// whose certificate is on the data disk, given by nymote.acme-ca. Pebble
// resolves the appliance's names through its challenge test server to
// 127.0.0.1 and validates on the host ports that QEMU forwards to the
// appliance's 443 (tls-alpn-01) and 80 (http-01). The appliance obtains a
// certificate through its own netstack; a client then verifies the chain
// that IMAPS and HTTPS serve against Pebble's root, for the appliance's
// names. One TCG boot; needs no root.
func TestBootMailACME(t *testing.T) {
	needMailAppliance(t)
	needTool(t, "mkfs.ext4", "e2fsprogs")
	if testing.Short() {
		t.Skip("builds an image, and builds and runs Pebble")
	}
	bin, _ := pebbletest.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	const domain, hostname = "acme.test", "mail.acme.test"

	// The host ports QEMU forwards to the appliance's 80, 443 and 993.
	httpAddr, httpsAddr, imapsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}

	// Pebble's HTTPS, for the appliance at 10.0.2.2 and for this test at
	// 127.0.0.1.
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := testutil.CAFiles(t, "10.0.2.2", "127.0.0.1")
	for name, b := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dnsPort, acmePort, mgmtPort, ctsMgmt := freeUDPTCPPort(t, "127.0.0.1"), testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":             filepath.Join(dir, "cert.pem"),
		"privateKey":              filepath.Join(dir, "key.pem"),
		"httpPort":                port(httpAddr), "tlsPort": port(httpsAddr),
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"retryAfter":   map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm": "ecdsa",
	}}
	b, _ := json.Marshal(conf)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var ctsOut, pebbleOut testutil.Buffer
	pebbletest.StartProc(t, &ctsOut, nil, filepath.Join(bin, "pebble-challtestsrv"), "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-management", fmt.Sprintf("127.0.0.1:%d", ctsMgmt), "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	pebbletest.StartProc(t, &pebbleOut, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, filepath.Join(bin, "pebble"),
		"-config", cfgFile, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	pebbletest.WaitLine(t, "Pebble", &pebbleOut, "Listening on", time.Minute)

	// The data disk: a store, and the test CA's certificate.
	data := t.TempDir()
	s, err := store.InitData(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(data, "acme-ca.pem"), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := datadisk.Create(ctx, data, disk, 256<<20); err != nil {
		t.Fatal(err)
	}

	imgDir, m := build(t, "mail", "qemu-x86_64")
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	vm, err := launch.StartQEMU(ctx, qemuImage(t, imgDir, m), launch.QEMU{
		Disk: disk, MemoryMiB: 256,
		Forwards: []launch.Forward{{Host: httpAddr, Guest: 80}, {Host: httpsAddr, Guest: 443}, {Host: imapsAddr, Guest: 993}},
		ExtraCmdline: []string{"nymote.net=" + guestNet, "nymote.domain=" + domain, "nymote.hostname=" + hostname,
			fmt.Sprintf("nymote.acme=https://10.0.2.2:%d/dir", acmePort), "nymote.acme-email=admin@" + domain,
			"nymote.acme-ca=acme-ca.pem"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, vm)
	started := time.Now()
	l, err := vm.WaitLine(ctx, "nymote: mail acme certificate obtained")
	if err != nil {
		t.Fatalf("no ACME certificate: %v", err)
	}
	t.Logf("after %s: %s", time.Since(started).Round(time.Millisecond), l.Text)

	// Pebble's root, from its management endpoint.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("Pebble's root: %q", rootPEM)
	}

	// IMAPS and HTTPS serve the certificate: its chain verifies against
	// Pebble's root for the appliance's names (tls.Dial checks both).
	for _, c := range []struct{ addr, name string }{{imapsAddr, hostname}, {httpsAddr, hostname}, {httpsAddr, "mta-sts." + domain}} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Minute}, "tcp", c.addr, &tls.Config{ServerName: c.name, RootCAs: roots})
		if err != nil {
			t.Fatalf("TLS to %s as %s, verified against Pebble's root: %v", c.addr, c.name, err)
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if err := leaf.VerifyHostname(c.name); err != nil {
			t.Errorf("%s: %v", c.addr, err)
		}
		t.Logf("%s as %s: %v, issued by %q", c.addr, c.name, leaf.DNSNames, leaf.Issuer.CommonName)
	}
}
