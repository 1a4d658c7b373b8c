package images

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/netstack/netstacktest"
	"github.com/nymote/nymote/signpost"
	"github.com/nymote/nymote/store"
)

// TestBootMailSignpost boots the mail appliance under QEMU (TCG) as the
// hub of alice's Signpost network: its data disk holds a node that has
// invited "laptop", with the endpoint where QEMU forwards its WireGuard
// and join port (UDP and TCP, on a veth address of the host). A laptop in
// a network namespace joins through that forward, brings stock WireGuard
// up (wg-quick over wireguard-go) with the printed configuration, finds
// the appliance by name through the appliance's own name server on its
// tunnel address (dig), and logs in to its IMAPS by that address over the
// tunnel with a real IMAP client (Python's imaplib), appending and reading
// a message. One TCG boot (about a minute); needs root (skips without).
func TestBootMailSignpost(t *testing.T) {
	needMailAppliance(t)
	netstacktest.NeedRoot(t)
	needTool(t, "mkfs.ext4", "e2fsprogs")
	needTool(t, "python3", "python3")
	needTool(t, "wg-quick", "wireguard-tools")
	needTool(t, "wireguard-go", "wireguard-go")
	needTool(t, "dig", "bind9-dnsutils")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The laptop's namespace, on a veth to the host: the host end
	// 198.18.77.1 is where QEMU forwards the appliance's port 51820.
	nsL := netstacktest.NewNS(t)
	hostEnd := fmt.Sprintf("vsp%d", os.Getpid()%100000)
	netstacktest.Run(t, "ip", "link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", nsL)
	netstacktest.Run(t, "ip", "addr", "add", "198.18.77.1/24", "dev", hostEnd)
	netstacktest.Run(t, "ip", "link", "set", hostEnd, "up")
	netstacktest.RunNS(t, nsL, "ip", "addr", "add", "198.18.77.2/24", "dev", "eth0")
	netstacktest.RunNS(t, nsL, "ip", "link", "set", "eth0", "up")
	port := freeUDPTCPPort(t, "198.18.77.1")
	endpoint := net.JoinHostPort("198.18.77.1", strconv.Itoa(port))

	// The appliance's data: alice, and its node, the hub, that invited
	// the laptop.
	data := t.TempDir()
	s, err := store.InitData(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, "alice", "correct horse", store.GitNone); err != nil {
		t.Fatal(err)
	}
	s.Close()
	inv, err := signpost.Issue(data, "laptop", endpoint, "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hubState, err := signpost.ReadState(data)
	if err != nil {
		t.Fatal(err)
	}
	hubID, err := signpost.LoadIdentity(data)
	if err != nil {
		t.Fatal(err)
	}
	hub4, _ := hubState.Addrs(hubID.WG)
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := datadisk.Create(ctx, data, disk, 256<<20); err != nil {
		t.Fatal(err)
	}

	dir, m := build(t, "mail", "qemu-x86_64")
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	vm, err := launch.StartQEMU(ctx, qemuImage(t, dir, m), launch.QEMU{
		Disk: disk, MemoryMiB: 256,
		Forwards:     []launch.Forward{{Host: endpoint, Guest: signpost.DefaultPort}, {Host: endpoint, Guest: signpost.DefaultPort, UDP: true}},
		ExtraCmdline: []string{"nymote.net=" + guestNet, "nymote.signpost=on"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, vm)
	started := time.Now()
	if _, err := vm.WaitLine(ctx, "nymote: mail imaps listening on"); err != nil {
		t.Fatal(err)
	}
	t.Logf("appliance up after %s", time.Since(started).Round(time.Millisecond))

	// The laptop joins through the forward and brings its tunnel up.
	dirL := t.TempDir()
	dialL := func(ctx context.Context, network, address string) (net.Conn, error) {
		return netstacktest.Dial(nsL, network, address, 30*time.Second)
	}
	joined := time.Now()
	if _, err := signpost.Join(ctx, dirL, inv, "", dialL); err != nil {
		t.Fatalf("join: %v\nconsole:\n%s", err, vm.Console())
	}
	conf, err := signpost.WGQuick(dirL)
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(t.TempDir(), "nymote.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1")
	up := netstacktest.CommandNS(ctx, nsL, "wg-quick", "up", confPath)
	up.Env = env
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("wg-quick up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		down := exec.Command("ip", "netns", "exec", nsL, "wg-quick", "down", confPath)
		down.Env = env
		down.CombinedOutput()
	})

	// By name, from the appliance's name server on its tunnel address.
	var named string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		out, _ := netstacktest.CommandNS(ctx, nsL, "dig", "@"+hub4.String(), "+short", "+time=3", "+tries=1", "mail.hub.alice.nymote", "A").CombinedOutput()
		if a, err := netip.ParseAddr(strings.TrimSpace(string(out))); err == nil {
			named = a.String()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mail.hub.alice.nymote through the tunnel: %q\nconsole:\n%s", out, vm.Console())
		}
	}
	if named != hub4.String() {
		t.Fatalf("mail.hub.alice.nymote is %s, want the appliance's tunnel address %s", named, hub4)
	}
	t.Logf("join to the first answer over the tunnel: %s", time.Since(joined).Round(time.Millisecond))
	out, err := netstacktest.CommandNS(ctx, nsL, "python3", "-c", imapScript, named, "993", "1", "over the tunnel").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("IMAP over the tunnel: %v\n%s\nconsole:\n%s", err, out, vm.Console())
	}
	t.Logf("IMAPS login, APPEND and FETCH at %s:993 over the tunnel: ok", named)
	bctx, bcancel := context.WithTimeout(ctx, bootTimeout)
	defer bcancel()
	if err := vm.PowerOff(bctx); err != nil {
		t.Fatal(err)
	}
}

// freeUDPTCPPort returns a port free for both UDP and TCP on host.
func freeUDPTCPPort(t *testing.T, host string) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(p)))
		ln.Close()
		if err == nil {
			pc.Close()
			return p
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}
