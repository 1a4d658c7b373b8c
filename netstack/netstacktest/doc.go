// Package netstacktest helps tests of package netstack and of services
// running on it: it creates network namespaces joined by veth pairs, runs
// commands and opens sockets inside them, and removes them when the test
// ends. It needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); NeedRoot skips a
// test otherwise.
//
// The tests of package netstack run, besides as root, the programs of
// these Debian packages, and skip (saying which package is missing) where
// a test needs one that is not installed:
//
//   - iproute2: ip (namespaces, veth pairs, addresses); required
//   - iputils-ping: ping, for the kernel side of the ping tests
//   - dnsmasq-base: dnsmasq, the DHCP, DNS and router-advertisement server
//     of the DHCP tests (dnsmasq-base rather than dnsmasq, which also
//     installs and starts a system service)
//   - ethtool: only where the SIOCETHTOOL ioctl is missing, as under
//     qemu-user when running the tests built for another GOARCH
//     (qemu-user-static: qemu-arm-static ./netstack.test)
package netstacktest
