// Package jitsu summons appliances just in time: it is an authoritative
// DNS server (github.com/miekg/dns, UDP and TCP) for the configured zones
// that boots an appliance when its name is looked up, answers once the
// appliance's service port accepts connections, and powers it off again
// when it has been idle (no queries for 2×TTL and no open connections).
// It is the Jitsu of MirageOS, with its Synjitsu part.
//
// Use: LoadConfig reads jitsu.yaml (strictly: unknown keys and bad values
// are errors naming the field and its line), New makes a Server, Start
// serves, Close powers the appliances off and stops. nymote summon does
// exactly that; nymote summon status reads Server.Status from the control
// endpoint (HTTP on loopback).
//
// # Launchers
//
// A Launcher boots one appliance and returns when its ports accept
// (Instance); an Instance stops cleanly and, when it is a Suspender, pauses
// and resumes. The Server guarantees one boot at a time per appliance: a
// burst of queries during a boot all wait for that one boot. Launchers:
// ProcessLauncher (the appliance program as a host process on host
// sockets), QEMULauncher (an image from nymote build, through package
// images: port forwards, QMP power-off, console listening lines),
// XLLauncher (Xen: xl create, shutdown -w, pause) and FirecrackerLauncher
// (firecracker --api-sock, Ctrl-Alt-Del to power off, PATCH /vm to
// pause).
//
// # No lost first connection
//
// A client typically connects right after the DNS answer. If nothing
// listened on the appliance's address at that moment it would be refused
// (RST) or, with a dropped SYN, wait a second or more for its SYN
// retransmit. MirageOS's Synjitsu answered the SYNs for the booting
// unikernel and handed the connection state over. jitsu does the simpler,
// portable thing: the host keeps a listening socket on every port of every
// appliance at the appliance's address, always. The host kernel completes
// the handshake at once, whatever the appliance's state; jitsu then waits
// for the appliance (booting it if it is stopped, resuming it if it is
// suspended) and proxies the connection to it. The appliance itself
// listens elsewhere: on a free loopback port (process launcher), behind a
// QEMU port forward, or on its own guest address (xl, Firecracker).
//
// What it costs: every byte crosses jitsu once more (two copies through
// the host kernel; Go splices TCP to TCP on Linux, so no user-space copy);
// one extra connection and two goroutines per client connection; the
// appliance sees jitsu's address, not the client's; and jitsu must stay up
// for the services to be reachable. What it gains: no client ever sees a
// refused connection or a SYN retransmit during a boot (the connection
// simply waits, like a slow server), it works with any launcher and
// network (user-mode QEMU, bridges, plain host processes) without kernel
// tricks, and it counts open connections, which idle stop needs.
//
// # Failures
//
// A boot that fails (missing program or image, exit before listening,
// no listener within the boot timeout) or an appliance that crashes puts
// the appliance in the Failed state: queries for its name get SERVFAIL and
// one log line says why; the next query after a back-off (doubling from
// Options.Backoff) tries again, so a crash loop cannot keep the host busy.
// Other names are unaffected; the DNS server stays up.
package jitsu
