// Package signpostbench measures Signpost's tunnel: TCP throughput and
// connection rate through WireGuard inside the appliance (wireguard-go on
// the appliance's gVisor netstack, package signpost/tunnel) against
// wireguard-go on the kernel's stack between the same kind of namespaces,
// in the same run; the client side is the same in both (the kernel's TCP
// over wireguard-go with a wg-quick configuration).
//
//	go test -run '^$' -bench . -benchtime 3x ./bench/signpost/   (as root)
package signpostbench
