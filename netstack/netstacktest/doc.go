// Package netstacktest helps tests of package netstack and of services
// running on it: it creates network namespaces joined by veth pairs, runs
// commands and opens sockets inside them, and removes them when the test
// ends. It needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); NeedRoot skips a
// test otherwise.
package netstacktest
