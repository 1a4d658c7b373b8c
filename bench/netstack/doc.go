// Package netstackbench compares gVisor's netstack, as package netstack
// runs it, with the kernel's own TCP/IP stack on the same veth pair:
// bulk TCP throughput in both directions and TCP connections per second.
// A kernel client in one network namespace talks to a server in the
// other, first on the kernel's stack, then on a netstack bound to the
// same interface. See run.sh and bench/README.md. Needs root.
package netstackbench
