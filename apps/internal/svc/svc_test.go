package svc

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestTLSConfigGeneratesOnceAndServes(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := filepath.Join(t.TempDir(), "data")
	s, err := OpenStore(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	cfg, fp1, err := TLSConfig(ctx, s, TLSOptions{Hostnames: []string{"localhost", "127.0.0.1"}}, log)
	if err != nil {
		t.Fatal(err)
	}
	_, fp2, err := TLSConfig(ctx, s, TLSOptions{}, log)
	if err != nil || fp1 != fp2 {
		t.Fatalf("second TLSConfig: fingerprint %s, %v; want the stored %s", fp2, err, fp1)
	}
	// The key is the node's, outside the store and its history.
	if fi, err := os.Stat(filepath.Join(dir, "node", filepath.FromSlash(KeyPath))); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node key %v, %v; want a file of mode 0600", fi, err)
	}
	if head, err := s.BranchHead(""); err != nil || !head.IsZero() {
		t.Errorf("generating the certificate committed %s (%v)", head, err)
	}
	if _, _, err := TLSConfig(ctx, s, TLSOptions{CertFile: "x.pem"}, log); err == nil {
		t.Error("a certificate without a key was accepted")
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].IPAddresses; len(got) != 1 || !got[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("certificate IPs %v", got)
	}
}
