package images

import (
	"bufio"
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
	"strings"
	"sync/atomic"
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
// 127.0.0.1 and validates through two counting proxies on the host to the
// ports that QEMU forwards to the appliance's 80 (http-01) and 443
// (tls-alpn-01). The tls-alpn-01 proxy refuses at first, so the appliance
// gets its first certificate by http-01, through its own netstack; a
// client verifies the chain that IMAPS and HTTPS serve against Pebble's
// root (from Pebble's management port) for the appliance's names. Pebble
// issues 45-second certificates: with the tls-alpn-01 proxy now passing,
// the appliance renews at two thirds of that by tls-alpn-01 without a
// restart, IMAPS then serves the new certificate, and an IMAPS connection
// opened before the renewal still works. One TCG boot, about 50 seconds
// here; needs no root.
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

	// Pebble validates through counting proxies to those ports: http-01
	// always passes; tls-alpn-01 is refused until the renewal.
	httpProxy, tlsProxy := startProxy(t, httpAddr), startProxy(t, httpsAddr)
	httpProxy.forward.Store(true)

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
		"httpPort":                port(httpProxy.addr), "tlsPort": port(tlsProxy.addr),
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"retryAfter":   map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm": "ecdsa",
		"profiles":     map[string]any{"default": map[string]any{"description": "short", "validityPeriod": 45}},
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
	pebbletest.StartProc(t, &pebbleOut, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}, filepath.Join(bin, "pebble"),
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
	roots := pebbletest.Roots(t, hc, fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort))

	if tlsProxy.conns.Load() == 0 || httpProxy.conns.Load() == 0 {
		t.Errorf("the first certificate after %d tls-alpn-01 connections (refused) and %d http-01 ones; want both tried", tlsProxy.conns.Load(), httpProxy.conns.Load())
	}

	// IMAPS and HTTPS serve the certificate: its chain verifies against
	// Pebble's root for the appliance's names (tls.Dial checks both).
	dial := func(addr, name string) (*tls.Conn, *x509.Certificate) {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Minute}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
		if err != nil {
			t.Fatalf("TLS to %s as %s, verified against Pebble's root: %v", addr, name, err)
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
		t.Logf("%s as %s: %v, serial %s, issued by %q", addr, name, leaf.DNSNames, leaf.SerialNumber, leaf.Issuer.CommonName)
		return conn, leaf
	}
	imapConn, first := dial(imapsAddr, hostname)
	defer imapConn.Close()
	for _, name := range []string{hostname, "mta-sts." + domain} {
		c, leaf := dial(httpsAddr, name)
		c.Close()
		if !leaf.Equal(first) {
			t.Errorf("HTTPS as %s serves serial %s, IMAPS %s", name, leaf.SerialNumber, first.SerialNumber)
		}
	}
	imapR := bufio.NewReader(imapConn)
	imapConn.SetDeadline(time.Now().Add(3 * time.Minute))
	if l, err := imapR.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		t.Fatalf("IMAPS greeting: %q %v", l, err)
	}

	// Renewal, at two thirds of the 45 seconds, by tls-alpn-01 now; the
	// IMAPS connection opened before it stays.
	tlsProxy.forward.Store(true)
	refused, httpConns := tlsProxy.conns.Load(), httpProxy.conns.Load()
	if l, err = vm.WaitLine(ctx, "nymote: mail acme certificate renewed"); err != nil {
		t.Fatalf("no renewal: %v", err)
	}
	t.Logf("after %s: %s", time.Since(started).Round(time.Millisecond), l.Text)
	if tlsProxy.conns.Load() == refused || httpProxy.conns.Load() != httpConns {
		t.Errorf("renewed after %d tls-alpn-01 connections and %d http-01 ones; want tls-alpn-01 only",
			tlsProxy.conns.Load()-refused, httpProxy.conns.Load()-httpConns)
	}
	c, renewed := dial(imapsAddr, hostname)
	c.Close()
	if renewed.Equal(first) {
		t.Errorf("after the renewal IMAPS still serves serial %s", first.SerialNumber)
	}
	pebbletest.NOOPAnswers(t, imapConn, imapR)
}

// proxy is a TCP proxy on 127.0.0.1 that counts its connections, and
// forwards them to to while forward is set (else closes them at once).
type proxy struct {
	addr    string
	forward atomic.Bool
	conns   atomic.Int64
}

func startProxy(t *testing.T, to string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &proxy{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.conns.Add(1)
			if !p.forward.Load() {
				c.Close()
				continue
			}
			go func() {
				defer c.Close()
				u, err := net.DialTimeout("tcp", to, time.Minute)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, u)
			}()
		}
	}()
	return p
}
