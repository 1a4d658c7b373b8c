package imapd

import (
	"bytes"
	"strconv"
)

// Delayed ACKs and clients with Nagle's algorithm on.
//
// Python's imaplib, like many clients, leaves Nagle's algorithm on (no
// TCP_NODELAY) and writes an APPEND literal and its closing CRLF in two
// writes. The client's kernel holds the CRLF until the literal is ACKed.
// Linux delays the ACK of data the application has read when the socket is
// in its interactive ("pingpong") mode, which it enters as soon as a server
// answers quickly (as we do with the "+" continuation request), hoping to
// piggyback the ACK on the answer; but the answer waits for the CRLF that
// waits for the ACK, until the delayed-ACK timer fires: 40 ms per APPEND.
// The same happens with any command the client writes in pieces.
//
// So after a read that leaves a command unfinished (inside a line, or
// inside a literal, or right after one), the connection asks the kernel
// for an immediate ACK (TCP_QUICKACK, which also leaves pingpong mode for
// the moment). After a read that ends a command, it does nothing: the
// response carries the ACK, as before. Under TLS the bytes cannot be
// followed, so every read asks for it (one extra ACK per client write).
//
// On the appliance's netstack (gVisor) the equivalent would be gVisor's
// tcpip.QuickAckOption set on the endpoint; its gonet.TCPConn does not
// expose the endpoint, so netstack would have to hand out connections that
// can (see quickAcker).

// quickAcker is a connection that can ask for an immediate ACK.
type quickAcker interface {
	quickAck() error
}

// cmdTracker follows the bytes a client sends to tell whether a read ended
// inside a command. It knows only lines and literals ({N}, {N+}, ~{N}), which
// is all that IMAP's framing is.
type cmdTracker struct {
	literal  int64 // literal bytes still to come
	midLine  bool  // the current line has begun (or continues after a literal)
	syncWait bool  // a synchronizing literal was announced: the client waits for "+"
	tls      bool  // after STARTTLS (or under implicit TLS): bytes are opaque
	line     []byte
}

// maxTrackedLine bounds what cmdTracker keeps of a line: its end, enough
// for a literal's announcement and for "tag STARTTLS".
const maxTrackedLine = 64

// feed follows p and reports whether the read ended inside a command that
// the client is still sending (and so the server will not answer soon).
func (t *cmdTracker) feed(p []byte) bool {
	if t.tls {
		return len(p) > 0
	}
	for len(p) > 0 {
		if t.literal > 0 {
			n := int64(len(p))
			if n > t.literal {
				n = t.literal
			}
			t.literal -= n
			p = p[n:]
			t.syncWait = false
			t.midLine = true // the command goes on after the literal
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.keep(p)
			t.midLine = true
			return true
		}
		t.keep(p[:i])
		p = p[i+1:]
		t.endLine()
		if t.tls {
			return len(p) > 0
		}
	}
	if t.literal > 0 {
		return !t.syncWait
	}
	return t.midLine
}

// keep appends to the line's tail.
func (t *cmdTracker) keep(p []byte) {
	t.line = append(t.line, p...)
	if len(t.line) > maxTrackedLine {
		t.line = append(t.line[:0], t.line[len(t.line)-maxTrackedLine:]...)
	}
}

// endLine looks at a finished line: a literal's announcement, or STARTTLS.
func (t *cmdTracker) endLine() {
	l := bytes.TrimSuffix(t.line, []byte("\r"))
	t.line = t.line[:0]
	t.midLine = false
	if n, sync, ok := literalAnnounced(l); ok {
		t.literal = n
		t.syncWait = sync
		t.midLine = n == 0
		return
	}
	// "tag STARTTLS": the bytes that follow are TLS records.
	if f := bytes.Fields(l); len(f) == 2 && bytes.EqualFold(f[1], []byte("STARTTLS")) {
		t.tls = true
	}
}

// literalAnnounced parses a line ending in "{N}" or "{N+}".
func literalAnnounced(l []byte) (n int64, sync, ok bool) {
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false, false
	}
	i := bytes.LastIndexByte(l, '{')
	if i < 0 {
		return 0, false, false
	}
	num := l[i+1 : len(l)-1]
	sync = true
	if len(num) > 0 && num[len(num)-1] == '+' {
		num, sync = num[:len(num)-1], false
	}
	v, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || v < 0 {
		return 0, false, false
	}
	return v, sync, true
}
