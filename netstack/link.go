package netstack

import (
	"errors"
	"fmt"
	"strings"
)

// LinkKind says what kind of device a Link is.
type LinkKind string

// The kinds of link a Stack can run on.
const (
	// KindPacket is an AF_PACKET socket bound to an existing network
	// interface (the appliance's NIC). The interface is brought up with no
	// kernel address and the kernel's IPv6 is disabled on it, so that only
	// the netstack answers on it.
	KindPacket LinkKind = "packet"
	// KindTAP is a TAP device opened through /dev/net/tun (created if it
	// does not exist). The kernel side of the TAP device is the host; the
	// netstack is the machine at the other end of the virtual cable.
	KindTAP LinkKind = "tap"
)

// ErrBadSpec is wrapped by the errors ParseSpec returns.
var ErrBadSpec = errors.New("bad link spec")

// Spec names a link, as written on a command line: "packet:eth0" or
// "tap:NAME".
type Spec struct {
	Kind LinkKind
	Name string // interface name
}

// String returns the spec in the form ParseSpec reads.
func (s Spec) String() string { return string(s.Kind) + ":" + s.Name }

// maxIfNameLen is the longest interface name Linux accepts (IFNAMSIZ-1).
const maxIfNameLen = 15

// ParseSpec parses a link spec of the form KIND:NAME, where KIND is
// "packet" or "tap" and NAME is a Linux interface name (1 to 15 bytes, no
// '/', ':', white space or NUL), as used by `nymote serve --net tap:NAME`.
func ParseSpec(spec string) (Spec, error) {
	kind, name, ok := strings.Cut(spec, ":")
	if !ok {
		return Spec{}, fmt.Errorf("netstack: %w %q: want KIND:NAME, such as tap:nymote0 or packet:eth0", ErrBadSpec, spec)
	}
	var s Spec
	switch LinkKind(kind) {
	case KindPacket, KindTAP:
		s.Kind = LinkKind(kind)
	default:
		return Spec{}, fmt.Errorf("netstack: %w %q: unknown link kind %q (want %q or %q)", ErrBadSpec, spec, kind, KindPacket, KindTAP)
	}
	if err := checkIfName(name); err != nil {
		return Spec{}, fmt.Errorf("netstack: %w %q: %v", ErrBadSpec, spec, err)
	}
	s.Name = name
	return s, nil
}

// checkIfName reports whether name is acceptable to Linux as an interface
// name (net/core/dev.c dev_valid_name).
func checkIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > maxIfNameLen:
		return fmt.Errorf("interface name %q longer than %d bytes", name, maxIfNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q not allowed", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("interface name %q contains %q", name, r)
		}
	}
	return nil
}
