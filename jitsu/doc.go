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
// # Names and records that are not appliances
//
// With signpost: (nymote summon --signpost DIR) jitsu also answers for a
// person's Signpost network from a node's data directory on the host:
// NODE.PERSON.nymote and SERVICE.NODE.PERSON.nymote are the node's tunnel
// addresses, as each node's own name server answers them
// (signpost.State.Lookup), read again when the node's state changes; only
// loopback (or signpost.clients) and the network itself may ask. A zone
// with mail: serves the records nymote mail dns prints for the domain
// (msgauth.Records: MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, SRV, CAA and
// the CNAMEs), with the DKIM keys read from the mail appliance's data
// directory again after each rotation, so the zone follows the keys.
//
// # Launchers
//
// A Launcher boots one appliance and returns when its ports accept
// (Instance); an Instance stops cleanly and, when it is a Suspender, pauses
// and resumes. The Server guarantees one boot at a time per appliance: a
// burst of queries during a boot all wait for that one boot. Launchers:
// ProcessLauncher (the appliance program as a host process on host
// sockets), QEMULauncher (an image from nymote build, through package
// launch: port forwards, QMP power-off, console listening lines),
// XLLauncher (Xen: xl create, shutdown -w, pause) and FirecrackerLauncher
// (firecracker --api-sock, Ctrl-Alt-Del to power off, PATCH /vm to
// pause).
//
// With slots: true (qemu, xl and firecracker, with a data disk) a VM
// launcher boots from the two image slots beside the data disk (package
// update) by one path for all three (startSlots, over launch.DiskSlots and
// launch.NextBoot): the configured image is installed when it changed, an
// update the appliance received is installed from its update disk, the
// try-once rule picks the slot, and a new image's test boot must print the
// appliance's good line (read on QEMU's or Firecracker's console, or with
// xl console) within Start or its VM is killed and the committed slot
// boots instead. xl and Firecracker boot the slot through a configuration
// written beside the slots at each boot: the launcher's config (or the
// slot image's own) with the slot's kernel, initramfs and command line,
// the data disk and the update disk (launch.XLSlotConfig,
// launch.FirecrackerSlotConfig). nymote update status|rollback --disk
// works on those slots whichever launcher boots them.
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
// appliance sees jitsu's address, not the client's, unless jitsu passes
// it on (see "Client addresses"); and jitsu must stay up for the services
// to be reachable. What it gains: no client ever sees a
// refused connection or a SYN retransmit during a boot (the connection
// simply waits, like a slow server), it works with any launcher and
// network (user-mode QEMU, bridges, plain host processes) without kernel
// tricks, and it counts open connections, which idle stop needs.
//
// # Spare connections
//
// Through jitsu, a client's connection to a running appliance would wait
// for jitsu's own connection to the appliance: its handshake, the
// service's accept and, for a server-first protocol (IMAP, SMTP), the
// greeting. For a host process that is a tenth of a millisecond; for a
// VM behind QEMU's user network under TCG it is most of the 5 to 8 ms a
// warm greeting takes (bench/jitsu measures both legs in one run). So
// while an appliance runs, jitsu keeps one spare connection per port,
// opened ahead of any client, and reads what the service sends on it (a
// greeting, buffered). A client's connection is spliced onto the spare
// at once, the buffered bytes are written to it, and a new spare is
// dialed in the background. For a client-first protocol (HTTP) the spare
// has nothing buffered and the client's request goes to a connection the
// service has already accepted. The rules:
//
//   - a spare is not a connection: it does not keep an appliance from its
//     idle stop, and Status.Connections does not count it (Status.Spares
//     does); the client connection it serves is counted as any other;
//   - a spare the appliance closes (EOF or a reset while it waits) is
//     noticed at once, dropped and replaced; quickly after a dial that
//     failed or a spare closed within a second, with a doubling wait;
//   - a spare is replaced after its age (spare: in the configuration,
//     DefaultSpareAge) even when the appliance keeps it, so that jitsu
//     closes it before the service's own timeout for a silent new
//     connection would, and no client is handed a connection at the
//     moment the service gives up on it;
//   - spares exist only while the appliance runs: a boot's held
//     connections are proxied as before; a stop or a suspend closes the
//     spares (and waits for their goroutines) before the appliance is
//     powered off or paused, a resume dials new ones; a crash drops them;
//   - a service that sends more than 64 KiB on a connection before any
//     client is not one spares suit: its port gets none (one log line).
//
// What it costs: one idle connection per port in each running appliance,
// renewed every 10 s, and one goroutine per port in jitsu. The service
// sees a connection accepted earlier than the client connected: a
// service that measured a client from its accept, or greeted it with the
// time, would see the spare's age. spare: off turns spares off for an
// appliance.
//
// # Client addresses
//
// Behind the proxy every client of an appliance would share jitsu's
// address, so a limit per address (failed logins) would shut out
// everyone at once. With proxy_protocol jitsu starts each connection to
// the appliance with a PROXY protocol version 2 header carrying the
// client's address and the address it connected to; the appliance
// runtime (package appliance) reads it on connections from the networks
// its proxy setting trusts, so every service's conn.RemoteAddr() is the
// client, and refuses such connections without a valid header. The
// launchers set the appliance's side: qemu adds nymote.proxy=10.0.2.2/32
// (where QEMU's port forwards come from, as the guest sees them) to the
// kernel command line, and proxy_protocol is on by default for it;
// process sets NYMOTE_PROXY=127.0.0.1/32,::1/128 in the program's
// environment, which the runtime's --proxy takes as its default (off by
// default: a program that is not on the runtime would read the header as
// data); for xl and Firecracker the image must carry nymote.proxy with
// the host's address on the bridge (nymote build --set proxy=ADDR) before
// proxy_protocol is turned on.
//
// Spares and headers: a spare is opened before its client is known, so
// its header cannot be sent then. jitsu sends it as the spare's first
// bytes when a client takes the spare; the appliance's listener holds
// the connection until its header comes (in the background: it keeps no
// other connection waiting) and only then hands it to the service. So
// with proxy_protocol a spare saves the connection's set-up (for a VM,
// the trip through QEMU's user network) but not the greeting, which the
// service sends once it knows its client. The appliance gives a header
// 20 s (app.ProxyHeaderTimeout); a spare's age must be shorter,
// which the configuration checks. A client's own PROXY header is data:
// jitsu's comes first.
//
// # DNS resources
//
// A query for an appliance that is booting waits for the boot, but holds
// nothing but its message and its reply address: UDP queries are parked
// and answered, all at once, by one goroutine per booting appliance; a
// TCP query waits on its connection's own goroutine. At most 256 queries
// per name and 2048 in all wait (Options.MaxPendingPerName, MaxPending);
// beyond, a query gets SERVFAIL at once and the log counts them, one line
// per second at most. Forwarding (forward:) serves only the networks in
// forward_clients (loopback by default), so that jitsu is no open
// resolver, and at most 128 queries at once (Options.MaxForwarding).
//
// Both legs of a proxied connection have TCP_NODELAY (Go's default for
// TCP), and bytes are spliced in the kernel: jitsu adds no Nagle delay.
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
