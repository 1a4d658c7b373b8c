// Package guard holds the defences that every network service of an
// appliance shares, so that a new protocol inherits them by using it:
//
//   - Listener wraps a net.Listener: it caps connections in total and per
//     remote host (refusing the one over the cap at once, with the
//     protocol's busy answer), bounds the TLS handshake and the client's
//     first bytes by a deadline, and closes connections that do not log in
//     in time.
//   - Auth rate-limits password checks per remote host and per account:
//     each attempt is counted before its password is hashed, failures make
//     later attempts wait longer (exponentially, up to a bound), and a host
//     may have only a few attempts in flight. It slows guessing down but
//     never shuts the rightful owner out: the right password is accepted
//     after the wait, and a password that succeeded recently skips it.
//
// The memory bound on password hashing itself lives in the store (a
// semaphore around argon2), which every caller of Authenticate passes
// through; Auth bounds how many attempts may wait for it.
//
// Hosts are keyed by the connection's remote address (an IPv6 address by
// its /64), so a front end that relays connections must pass the client's
// address on (jitsu does, with the PROXY protocol).
package guard
