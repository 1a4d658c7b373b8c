package jitsu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/internal/testutil"
)

// buildImage builds app for qemu-x86_64 into a temporary folder.
func buildImage(t testing.TB, app string) string {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed: apt-get install -y qemu-system-x86")
	}
	src, _ := filepath.Abs("..")
	dir := filepath.Join(t.TempDir(), app)
	if _, err := images.Build(context.Background(), images.Options{App: app, Board: "qemu-x86_64", OutDir: dir, SourceDir: src}); err != nil {
		t.Fatalf("building %s: %v", app, err)
	}
	return dir
}

// testKVM is the kvm setting of VM tests: off (TCG) unless NYMOTE_KVM
// says otherwise (nested KVM often exists and hangs).
func testKVM() string {
	if v := os.Getenv("NYMOTE_KVM"); v != "" {
		return v
	}
	return "off"
}

// TestQEMU boots the hello appliance under QEMU on a query, greets it right
// after the answer, lets it power off when idle, and boots it again with
// its data disk intact (hello counts its boots on the disk).
func TestQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("VM boots in -short mode")
	}
	img := buildImage(t, "hello")
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := datadisk.Create(context.Background(), t.TempDir(), disk, 32<<20); err != nil {
		t.Skipf("no data disk (mkfs.ext4 from e2fsprogs?): %v", err)
	}
	port := testutil.FreePort(t)
	s, _ := startServer(t, Options{IdleCheck: 100 * time.Millisecond}, fmt.Sprintf(`
  - name: hello.home.test
    address: 127.0.0.1
    ports: [{name: hello, port: %d}]
    ttl: 2s
    boot_timeout: 3m
    data: %s
    launcher: {kind: qemu, image: %s, kvm: %s}
`, port, disk, img, testKVM()))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for boot := 1; boot <= 2; boot++ {
		t0 := time.Now()
		r := queryWithin(t, s.DNSAddr(), "udp", "hello.home.test", dns.TypeA, 3*time.Minute)
		wantA(t, r, "127.0.0.1", 2)
		answered := time.Since(t0)
		c, _, g := greet(t, addr)
		if want := fmt.Sprintf("hello from nymote (boot %d)", boot); g != want {
			t.Fatalf("greeting %q, want %q", g, want)
		}
		t.Logf("boot %d: answer after %v, greeting after %v", boot, answered.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
		c.Close()
		st := waitState(t, s, "hello.home.test", Stopped, 90*time.Second)
		if st.LastError != "" {
			t.Fatalf("the idle stop was not clean: %s", st.LastError)
		}
	}
}
