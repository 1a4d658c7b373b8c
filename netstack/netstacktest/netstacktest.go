//go:build linux

package netstacktest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veth pairs and TAP devices")
	}
}

// NeedCommand skips the test if the named program is not installed,
// saying which Debian package provides it.
func NeedCommand(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s: apt-get install -y %s", name, debianPackage)
	}
	return p
}

var seq atomic.Uint32

// uniqueName returns a name unique to this process and call, short enough
// for an interface name (at most 15 bytes).
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d%c", prefix, os.Getpid()%100000, 'a'+rune(seq.Add(1)%26)) + fmt.Sprint(seq.Load()/26)
}

// NewNS creates a network namespace with its loopback up and deletes it
// when the test ends. It returns the namespace's name (as `ip netns`
// knows it).
func NewNS(t testing.TB) string {
	t.Helper()
	NeedCommand(t, "ip", "iproute2")
	name := uniqueName("nst")
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// Veth creates a veth pair with one end in namespace nsA and the other in
// nsB, both down, and returns the ends' names. Deleting either namespace
// deletes the pair.
func Veth(t testing.TB, nsA, nsB string) (a, b string) {
	t.Helper()
	a, b = uniqueName("va"), uniqueName("vb")
	Run(t, "ip", "link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, "netns", nsB)
	return a, b
}

// Run runs a command and fails the test if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// RunNS runs a command inside namespace ns and fails the test if it fails.
func RunNS(t testing.TB, ns, name string, args ...string) string {
	t.Helper()
	return Run(t, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// CommandNS returns a command that runs name inside namespace ns.
func CommandNS(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Do runs f on an OS thread that is inside namespace ns. Sockets and
// devices f opens stay in ns after Do returns. f must not start
// goroutines that open sockets expecting to be in ns.
func Do(ns string, f func() error) error {
	target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netstacktest: open namespace %s: %w", ns, err)
	}
	defer unix.Close(target)
	runtime.LockOSThread()
	orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netstacktest: open own namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netstacktest: enter namespace %s: %w", ns, err)
	}
	ferr := f()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime ends it with the
		// goroutine rather than reuse a thread in the wrong namespace.
		return fmt.Errorf("netstacktest: leave namespace %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Dial connects from inside namespace ns with the kernel's stack.
func Dial(ns, network, address string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := Do(ns, func() error {
		var err error
		c, err = net.DialTimeout(network, address, timeout)
		return err
	})
	return c, err
}

// Listen listens inside namespace ns with the kernel's stack.
func Listen(ns, network, address string) (net.Listener, error) {
	var l net.Listener
	err := Do(ns, func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// DisableTXChecksumOffload turns off transmit checksum offload on the
// interface ifname in namespace ns (`ethtool -K ifname tx off`).
//
// A veth end offloads checksums to its peer: frames it sends carry
// partial checksums that the peer's kernel trusts. A raw AF_PACKET reader
// on the peer (the netstack) sees the frames as they are and would drop
// every TCP and UDP packet for a bad checksum. A real NIC delivers frames
// with the checksums computed by the sender.
//
// It uses the SIOCETHTOOL ioctl, and the ethtool program where the ioctl
// is not available (qemu-user, which runs the tests of other GOARCHes,
// does not translate it).
func DisableTXChecksumOffload(ns, ifname string) error {
	err := Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		// struct ethtool_value { __u32 cmd; __u32 data; }
		const ethtoolSTXCSUM = 0x17
		val := [2]uint32{ethtoolSTXCSUM, 0}
		ifr, err := unix.NewIfreq(ifname)
		if err != nil {
			return err
		}
		return ethtoolIoctl(fd, ifr, &val)
	})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOTTY) {
		if _, lerr := exec.LookPath("ethtool"); lerr != nil {
			return fmt.Errorf("%w (and no ethtool program: apt-get install -y ethtool)", err)
		}
		out, err := exec.Command("ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ethtool -K %s tx off: %v: %s", ifname, err, out)
		}
		return nil
	}
	return err
}
