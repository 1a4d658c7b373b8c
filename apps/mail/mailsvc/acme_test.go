package mailsvc_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/internal/pebbletest"
	"github.com/nymote/nymote/internal/testutil"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// TestACMEPebble: mail services get their certificates from Pebble, Let's
// Encrypt's test CA. The first answers tls-alpn-01 on its HTTPS port; the
// second's HTTPS is not where Pebble validates, so its tls-alpn-01
// validation fails and it goes on with http-01 on its HTTP port. A client
// verifies each chain against Pebble's root, on HTTPS and IMAPS. Pebble
// issues 30-second certificates here: the first service renews at two
// thirds of that without a restart, and a connection opened before the
// renewal still works after it.
func TestACMEPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Pebble")
	}
	bin, src := pebbletest.Binaries(t)
	dir := t.TempDir()
	dnsPort, acmePort, mgmtPort, ctsMgmt := freeUDPPort(t), freePort(t), freePort(t), freePort(t)
	// Service A's HTTPS listener is where Pebble validates tls-alpn-01,
	// service B's HTTP listener where it validates http-01.
	httpsA, httpA, httpsB, httpB := listen(t), listen(t), listen(t), listen(t)
	tlsPort := httpsA.Addr().(*net.TCPAddr).Port
	httpPort := httpB.Addr().(*net.TCPAddr).Port
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":             filepath.Join(src, "test/certs/localhost/cert.pem"),
		"privateKey":              filepath.Join(src, "test/certs/localhost/key.pem"),
		"httpPort":                httpPort, "tlsPort": tlsPort,
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"retryAfter":   map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm": "ecdsa",
		"profiles":     map[string]any{"default": map[string]any{"description": "short", "validityPeriod": 30}},
	}}
	b, _ := json.Marshal(conf)
	cfgFile := filepath.Join(dir, "pebble.json")
	os.WriteFile(cfgFile, b, 0o600)
	var ctsOut, pebbleOut testutil.Buffer
	pebbletest.StartProc(t, &ctsOut, nil, filepath.Join(bin, "pebble-challtestsrv"), "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-management", fmt.Sprintf("127.0.0.1:%d", ctsMgmt), "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	pebbletest.StartProc(t, &pebbleOut, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, filepath.Join(bin, "pebble"),
		"-config", cfgFile, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	pebbletest.WaitLine(t, "Pebble", &pebbleOut, "Listening on", time.Minute)

	// The client of Pebble's own HTTPS trusts its test CA.
	minica, err := os.ReadFile(filepath.Join(src, "test/certs/pebble.minica.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pebblePool := x509.NewCertPool()
	pebblePool.AppendCertsFromPEM(minica)
	pebbleClient := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pebblePool}}}

	serve := func(name string, httpLn, httpsLn net.Listener) (*testutil.Buffer, *testutil.Buffer, net.Listener) {
		var out, logs testutil.Buffer
		imaps := listen(t)
		cfg := mailsvc.Config{DataDir: t.TempDir(), Domains: []string{name}, Hostname: "mail." + name, Stdout: &out,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			ACME: &mailsvc.ACME{DirectoryURL: fmt.Sprintf("https://localhost:%d/dir", acmePort), Email: "admin@" + name,
				HTTPClient: pebbleClient, RetryMin: time.Second}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- mailsvc.Serve(ctx, cfg, mailsvc.Listeners{HTTP: httpLn, HTTPS: httpsLn, IMAPS: imaps}) }()
		t.Cleanup(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Error("Serve did not return")
			}
			if t.Failed() {
				t.Logf("%s console:\n%s\nlogs:\n%s", name, out.String(), logs.String())
			}
		})
		return &out, &logs, imaps
	}

	// Pebble's root, for the clients.
	roots := pebbletest.Roots(t, pebbleClient, fmt.Sprintf("https://localhost:%d/roots/0", mgmtPort))
	// dialVerified connects with TLS to addr as name and verifies the
	// chain against Pebble's root; it returns the connection and the
	// leaf's serial.
	dialVerified := func(addr, name string) (*tls.Conn, string) {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
		if err != nil {
			t.Fatalf("TLS to %s as %s, verified against Pebble's root: %v", addr, name, err)
		}
		return c, c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}

	outA, logsA, imapsA := serve("a.test", httpA, httpsA)
	pebbletest.WaitLine(t, "A's certificate", outA, "acme certificate obtained", 2*time.Minute)
	if !strings.Contains(outA.String(), "the self-signed one (above) serves until then") {
		t.Errorf("the console does not say the self-signed certificate serves until then:\n%s", outA.String())
	}
	if !strings.Contains(logsA.String(), "answering a tls-alpn-01 validation") {
		t.Errorf("A's certificate without a tls-alpn-01 validation:\n%s", logsA.String())
	}
	c, serial := dialVerified(httpsA.Addr().String(), "mail.a.test")
	c.Close()
	cs, _ := dialVerified(httpsA.Addr().String(), "mta-sts.a.test")
	cs.Close()
	// IMAPS serves the same certificate, and this connection stays open
	// across the renewal.
	imapConn, imapSerial := dialVerified(imapsA.Addr().String(), "mail.a.test")
	defer imapConn.Close()
	if imapSerial != serial {
		t.Errorf("IMAPS serves serial %s, HTTPS %s", imapSerial, serial)
	}
	imapR := bufio.NewReader(imapConn)
	imapConn.SetDeadline(time.Now().Add(2 * time.Minute))
	if l, err := imapR.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		t.Fatalf("IMAPS greeting: %q %v", l, err)
	}

	outB, logsB, _ := serve("b.test", httpB, httpsB)
	pebbletest.WaitLine(t, "B's certificate", outB, "acme certificate obtained", 2*time.Minute)
	if !strings.Contains(logsB.String(), "answering an http-01 validation") {
		t.Errorf("B's certificate without an http-01 validation:\n%s", logsB.String())
	}
	c, _ = dialVerified(httpsB.Addr().String(), "mail.b.test")
	c.Close()

	// Renewal: at 20 of the 30 seconds.
	pebbletest.WaitLine(t, "A's renewal", outA, "acme certificate renewed", 2*time.Minute)
	c, serial2 := dialVerified(httpsA.Addr().String(), "mail.a.test")
	c.Close()
	if serial2 == serial {
		t.Errorf("after the renewal HTTPS still serves serial %s", serial)
	}
	pebbletest.NOOPAnswers(t, imapConn, imapR)
}
