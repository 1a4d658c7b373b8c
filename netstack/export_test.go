//go:build linux

package netstack

// ForceReadv makes new stacks read AF_PACKET sockets with gVisor's readv
// dispatcher, as they do on 32-bit platforms, so that amd64 test runs
// cover that path too.
func ForceReadv(on bool) { forceReadv.Store(on) }
