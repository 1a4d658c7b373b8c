package imapd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The protocol layer (see the package doc) sits between a client's
// connection and imapserver. imapserver reads the client through an
// innerConn, whose Read is driven by the layer: each call hands imapserver
// at most the rest of one command (its line and literals, streamed, never
// held whole), so that when imapserver asks for more it has finished the
// command before, responses included. A command the layer answers itself
// (see intercepted) is read there, in that Read, with imapserver idle
// between commands: its answers go out in order between those of the
// commands around it, however a client pipelines.
//
// What imapserver writes passes through the layer too, to follow the
// protocol's framing (lines and literals) and to see two things:
// continuation requests ("+"), which tell the layer that the bytes the
// client sends next are a literal, an AUTHENTICATE response or IDLE's DONE
// for the command in progress rather than a new command; and capability
// lists, to which the layer adds the capabilities it implements.
//
// TLS is the layer's: implicit TLS is done beneath it, and STARTTLS is
// intercepted, its handshake done on the client's connection, after which
// the imapserver connection (still not authenticated, so without state)
// is ended and a new one begun on a second imapserver.Server that knows its
// connections are secure (InsecureAuth, no STARTTLS); that new connection's
// greeting is not sent, as RFC 3501 6.2.1 wants none.
type proto struct {
	s     *Server
	raw   *corkConn // the client's connection, beneath TLS
	outer net.Conn  // raw, or TLS over it
	br    *bufio.Reader
	tls   bool

	sess atomic.Pointer[Session]
	// cont: imapserver wrote a continuation request since the layer
	// last forwarded a byte.
	cont atomic.Bool

	// Input state, used only by the goroutine that reads (imapserver's).
	mode    inMode
	litLeft int64
	tail    []byte // the end of the command line being forwarded
	inner   *innerConn

	wmu sync.Mutex // writes to outer
	out outScan

	// CONDSTORE (condstore.go): enabled for the session, and what to do
	// to the output of the command in progress (guarded by wmu).
	cond  atomic.Bool
	qres  atomic.Bool // QRESYNC enabled (implies cond)
	hook  condHook
	input []byte // a command rewritten by the layer, for imapserver to read
	// changedSince is the CHANGEDSINCE of the FETCH being handed to
	// imapserver (fetchCmd), for Session.Fetch; 0 for none. Only the
	// goroutine that reads (imapserver's) uses it.
	changedSince uint64
	// search is what the layer saw of the SEARCH being handed to
	// imapserver, for Session.Search (searchwrite.go); only the
	// goroutine that reads (imapserver's) uses it. searchSub is the
	// answer that Session.Search made ready, to be written in place of
	// imapserver's (guarded by wmu).
	search    searchForm
	searchSub *searchSub

	// fix: the session has fetched what imapserver encodes unlike the
	// grammar (fetchfix.go), whose FETCH responses are rewritten;
	// partials are the origins of its partial BINARY sections.
	fix      atomic.Bool
	partials binaryPartials
}

type inMode int

const (
	inIdle    inMode = iota // between commands
	inLine                  // forwarding a command line
	inLit                   // forwarding a literal, then the rest of its line
	inWaitLit               // after a synchronizing literal's announcement
	inRawLine               // forwarding a continuation line (AUTHENTICATE, DONE)
)

// maxTail is what the layer keeps of a line's end to see a literal's
// announcement ("{4294967295+}" at most, with "~" and CR).
const maxTail = 24

// innerConn is imapserver's side of a connection: one per imapserver
// connection (a second after STARTTLS).
type innerConn struct {
	p        *proto
	dropLine bool        // drop what imapserver writes up to its first LF (the greeting)
	detached atomic.Bool // handed over after STARTTLS: Close leaves the client's connection open
}

func (c *innerConn) Read(b []byte) (int, error) { return c.p.read(c, b) }

func (c *innerConn) Write(b []byte) (int, error) { return c.p.write(c, b) }

func (c *innerConn) Close() error {
	if c.detached.Load() {
		return nil
	}
	return c.p.outer.Close()
}

func (c *innerConn) LocalAddr() net.Addr                { return c.p.raw.LocalAddr() }
func (c *innerConn) RemoteAddr() net.Addr               { return c.p.raw.RemoteAddr() }
func (c *innerConn) SetDeadline(t time.Time) error      { return c.p.raw.SetDeadline(t) }
func (c *innerConn) SetReadDeadline(t time.Time) error  { return c.p.raw.SetReadDeadline(t) }
func (c *innerConn) SetWriteDeadline(t time.Time) error { return c.p.raw.SetWriteDeadline(t) }

// NetConn returns the client's connection (TLS, or the raw one), for
// guard.LoggedIn and corkOf.
func (c *innerConn) NetConn() net.Conn { return c.p.outer }

// read hands imapserver the next bytes of the client's input.
func (p *proto) read(c *innerConn, b []byte) (int, error) {
	if c != p.inner || c.detached.Load() {
		return 0, io.EOF
	}
	for {
		switch p.mode {
		case inIdle, inWaitLit:
			if p.cont.Swap(false) {
				// imapserver asked for the rest of the command
				// in progress.
				if p.mode == inWaitLit {
					p.mode = inLit
				} else {
					p.mode = inRawLine
				}
				continue
			}
			// imapserver is done with what it was given (a
			// refused synchronizing literal is never sent):
			// the next bytes are a new command.
			p.mode = inIdle
			handled, err := p.command()
			if err != nil {
				return 0, err
			}
			if handled {
				if len(p.input) > 0 {
					p.mode = inLine
				}
				continue
			}
			p.mode = inLine
			p.tail = p.tail[:0]
		case inLit:
			if p.litLeft == 0 {
				p.mode = inLine
				continue
			}
			if int64(len(b)) > p.litLeft {
				b = b[:p.litLeft]
			}
			n, err := p.br.Read(b)
			p.litLeft -= int64(n)
			return n, err
		case inLine, inRawLine:
			return p.forwardLine(b)
		}
	}
}

// forwardLine hands imapserver the command line (up to its LF) and, after
// it, follows a literal's announcement.
func (p *proto) forwardLine(b []byte) (int, error) {
	if len(p.input) > 0 {
		// A command the layer rewrote, literals non-synchronizing.
		n := copy(b, p.input)
		p.input = p.input[n:]
		if len(p.input) == 0 {
			p.mode = inIdle
		}
		return n, nil
	}
	if p.br.Buffered() == 0 {
		if _, err := p.br.Peek(1); err != nil {
			return 0, err
		}
	}
	buf, _ := p.br.Peek(p.br.Buffered())
	if len(buf) > len(b) {
		buf = buf[:len(b)]
	}
	i := bytes.IndexByte(buf, '\n')
	if i >= 0 {
		buf = buf[:i+1]
	}
	n := copy(b, buf)
	if i < 0 {
		p.keepTail(buf)
		p.br.Discard(n)
		return n, nil
	}
	p.keepTail(buf[:i])
	p.br.Discard(n)
	line := bytes.TrimSuffix(p.tail, []byte("\r"))
	p.tail = p.tail[:0]
	if p.mode == inRawLine {
		p.mode = inIdle
		return n, nil
	}
	if size, sync, ok := literalAnnounced(line); ok {
		p.litLeft = size
		if sync {
			p.mode = inWaitLit
		} else {
			p.mode = inLit
		}
		return n, nil
	}
	p.mode = inIdle
	return n, nil
}

func (p *proto) keepTail(b []byte) {
	p.tail = append(p.tail, b...)
	if len(p.tail) > maxTail {
		p.tail = append(p.tail[:0], p.tail[len(p.tail)-maxTail:]...)
	}
}

// maxCmdHead is how much of a command line the layer reads to find its
// name.
const maxCmdHead = 64

// command looks at the next command: one the layer answers is read and
// answered (handled); any other is left to imapserver.
func (p *proto) command() (handled bool, err error) {
	p.changedSince = 0 // the command before's, if imapserver refused it
	p.search = searchForm{}
	p.dropSearch() // the command before's, if imapserver did not write it
	head, err := p.peekHead()
	if err != nil {
		return false, err
	}
	tag, name := cmdName(head)
	var search searchForm
	if name == "SEARCH" || name == "UID SEARCH" {
		search = searchFormOf(head, tag, name) // before head is read past
	}
	if condCommands[name] {
		if handled, err := p.condCommand(tag, name); handled || err != nil {
			if err == nil && len(p.input) > 0 {
				// Rewritten (or read whole) for imapserver.
				p.search = search
			}
			return true, err
		}
	}
	p.search = search
	if name == "LIST" || name == "LSUB" {
		if handled, err := p.listCommand(tag, name); handled || err != nil {
			return true, err
		}
	}
	h := intercepted[name]
	if h == nil {
		return false, nil
	}
	cmd, err := p.readCommand(tag, name)
	if err != nil {
		return true, err
	}
	if cmd == nil { // refused (too long), answered already
		return true, nil
	}
	if err := h(p, cmd); err != nil {
		return true, err
	}
	return true, nil
}

// peekHead returns the start of the next command line without consuming
// it: up to its LF or maxCmdHead bytes.
func (p *proto) peekHead() ([]byte, error) {
	n := 1
	for {
		buf, err := p.br.Peek(n)
		if err != nil {
			if len(buf) > 0 && errors.Is(err, bufio.ErrBufferFull) {
				return buf, nil
			}
			return nil, err
		}
		buf, _ = p.br.Peek(p.br.Buffered())
		if bytes.IndexByte(buf, '\n') >= 0 || len(buf) >= maxCmdHead {
			return buf, nil
		}
		n = len(buf) + 1
	}
}

// cmdName returns a command's tag and upper-case name ("UID SORT" for a UID
// command).
func cmdName(head []byte) (tag, name string) {
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		head = head[:i]
	}
	head = bytes.TrimSuffix(head, []byte("\r"))
	f := bytes.SplitN(head, []byte(" "), 4)
	if len(f) < 2 {
		return "", ""
	}
	name = string(bytes.ToUpper(f[1]))
	if name == "UID" && len(f) >= 3 {
		name += " " + string(bytes.ToUpper(f[2]))
	}
	return string(f[0]), name
}

// write passes what imapserver writes to the client, following its framing.
func (p *proto) write(c *innerConn, b []byte) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if c.detached.Load() {
		return 0, net.ErrClosed
	}
	n := len(b)
	if c.dropLine {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return n, nil
		}
		c.dropLine = false
		b = b[i+1:]
	}
	if handled, err := p.substSearch(b); handled || err != nil {
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	if err := p.out.scan(p, b); err != nil {
		return 0, err
	}
	return n, nil
}

// writeOut writes the layer's own responses.
func (p *proto) writeOut(b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.raw.SetWriteDeadline(time.Now().Add(uncorkTimeout))
	_, err := p.outer.Write(b)
	p.raw.SetWriteDeadline(time.Time{})
	return err
}

// outScan follows imapserver's output.
type outScan struct {
	mid   bool   // inside a line (after its start was looked at)
	lit   int64  // literal bytes to pass
	head  []byte // the start of a line, held while it may be a capability list
	tail  []byte
	obuf  []byte
	isCap bool
	held  bool     // the line held is for condHeld, not a capability list
	fx    fetchFix // rewrites FETCH responses (fetchfix.go)
}

// maxCapLine bounds a capability line held to be rewritten.
const maxCapLine = 4096

var capPrefixes = [][]byte{[]byte("CAPABILITY "), []byte("OK [CAPABILITY "), []byte("PREAUTH [CAPABILITY ")}

// classify looks at a line's start: capability list (isCap), not one
// (done), or too short to say.
func classify(head []byte) (isCap, done bool) {
	i := bytes.IndexByte(head, ' ')
	if i < 0 {
		return false, len(head) > maxCmdHead || bytes.IndexByte(head, '\n') >= 0
	}
	rest := head[i+1:]
	for j, pre := range capPrefixes {
		if j == 0 && !bytes.HasPrefix(head, []byte("* ")) {
			continue
		}
		if bytes.HasPrefix(rest, pre) {
			return true, true
		}
		if bytes.HasPrefix(pre, rest) {
			return false, false
		}
	}
	return false, true
}

func (o *outScan) scan(p *proto, b []byte) error {
	o.obuf = o.obuf[:0]
	flush := func() error {
		if len(o.obuf) == 0 {
			return nil
		}
		_, err := p.outer.Write(o.obuf)
		o.obuf = o.obuf[:0]
		return err
	}
	for len(b) > 0 {
		switch {
		case o.lit > 0:
			n := int64(len(b))
			if n > o.lit {
				n = o.lit
			}
			if n >= 4096 {
				if err := flush(); err != nil {
					return err
				}
				if _, err := p.outer.Write(b[:n]); err != nil {
					return err
				}
			} else {
				o.obuf = append(o.obuf, b[:n]...)
			}
			o.lit -= n
			b = b[n:]
		case !o.mid:
			// The start of a line: held until it is known whether
			// it is a capability list, and to its end if it is.
			if len(o.head) == 0 && b[0] == '+' {
				p.cont.Store(true)
				o.mid = true
				continue
			}
			i := bytes.IndexByte(b, '\n')
			end := len(b)
			if i >= 0 {
				end = i + 1
			}
			if !o.isCap {
				take := end
				if len(o.head)+take > maxCmdHead+1 && i < 0 {
					take = maxCmdHead + 1 - len(o.head)
					if take < 0 {
						take = 0
					}
				}
				o.head = append(o.head, b[:take]...)
				b = b[take:]
				isCap, done := classify(o.head)
				more, hold := false, false
				if !isCap {
					more, hold = p.condHead(o.head)
				}
				if (!done || more) && bytes.IndexByte(o.head, '\n') < 0 && len(o.head) <= maxCmdHead {
					continue
				}
				if hold {
					o.held = true
					isCap = true
				}
				if !isCap {
					h := p.condLine(o, o.head)
					o.head = o.head[:0]
					o.mid = true
					if p.fix.Load() {
						if _, match, _ := fetchHead(h); match {
							o.fx.partial = &p.partials
							o.fx.start()
						}
					}
					o.plain(h)
					continue
				}
				o.isCap = true
				if bytes.IndexByte(o.head, '\n') < 0 {
					continue
				}
			} else {
				o.head = append(o.head, b[:end]...)
				b = b[end:]
				if i < 0 {
					if len(o.head) > maxCapLine { // not ours to rewrite
						h := o.head
						o.head, o.isCap, o.held, o.mid = o.head[:0], false, false, true
						o.plain(h)
					}
					continue
				}
			}
			if o.held {
				o.obuf = append(o.obuf, p.condHeld(o.head)...)
			} else {
				o.obuf = append(o.obuf, addCaps(o.head, p.extraCaps())...)
			}
			o.head, o.isCap, o.held = o.head[:0], false, false
		default:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				o.plain(b)
				b = nil
				continue
			}
			o.plain(b[:i+1])
			b = b[i+1:]
		}
	}
	return flush()
}

// plain passes bytes of a line (up to its LF at most), seeing a literal
// announced at its end.
func (o *outScan) plain(b []byte) {
	if o.fx.on {
		o.obuf = o.fx.apply(o.obuf, b)
	} else {
		o.obuf = append(o.obuf, b...)
	}
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		o.tail = append(o.tail, b...)
		if len(o.tail) > maxTail {
			o.tail = append(o.tail[:0], o.tail[len(o.tail)-maxTail:]...)
		}
		return
	}
	o.tail = append(o.tail, b[:i]...)
	line := bytes.TrimSuffix(o.tail, []byte("\r"))
	if len(line) > maxTail {
		line = line[len(line)-maxTail:]
	}
	o.tail = o.tail[:0]
	if n, _, ok := literalAnnounced(line); ok && n > 0 {
		o.lit = n
		return // the line goes on after the literal
	}
	o.mid = false
	o.fx.stop()
}

// addCaps adds caps to a capability list (a CAPABILITY response, or a
// CAPABILITY response code).
func addCaps(line []byte, caps string) []byte {
	if caps == "" {
		return line
	}
	at := bytes.IndexByte(line, ']')
	if !bytes.HasPrefix(line, []byte("* CAPABILITY ")) && at >= 0 {
		out := append([]byte(nil), line[:at]...)
		out = append(out, caps...)
		return append(out, line[at:]...)
	}
	at = len(bytes.TrimRight(line, "\r\n"))
	out := append([]byte(nil), line[:at]...)
	out = append(out, caps...)
	return append(out, line[at:]...)
}

// extraCaps are the capabilities the layer implements, each with a leading
// space, for the session's state.
func (p *proto) extraCaps() string {
	sess := p.sess.Load()
	if sess == nil || sess.user == nil {
		return ""
	}
	return " " + layerCaps
}

// layerCaps are announced after login.
const layerCaps = "QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE SORT ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC"

// serveConn begins serving a client's connection (tlsDone: under implicit
// TLS, done by the caller).
func (s *Server) serveConn(raw *corkConn, outer net.Conn, tlsDone bool) {
	p := &proto{s: s, raw: raw, outer: outer, tls: tlsDone}
	p.br = bufio.NewReaderSize(outer, 4096)
	p.inner = &innerConn{p: p}
	if tlsDone {
		s.secureLn.push(p.inner)
	} else {
		s.plainLn.push(p.inner)
	}
}

// startTLS answers STARTTLS (RFC 3501 6.2.1) the way imapserver would, and
// on success hands the connection to the secure imapserver.
func startTLS(p *proto, cmd *command) error {
	if !cmd.end() {
		return p.bad(cmd.tag, "Syntax error: STARTTLS takes no arguments")
	}
	cfg := p.s.opts.TLSConfig
	if cfg == nil {
		return p.respond(cmd.tag, "NO STARTTLS not supported")
	}
	if sess := p.sess.Load(); p.tls || sess == nil || sess.user != nil {
		return p.respond(cmd.tag, "BAD STARTTLS not available")
	}
	if p.br.Buffered() > 0 {
		// Commands sent in clear text after STARTTLS, before the
		// handshake: an injection attempt, or a broken client.
		p.respond("*", "BYE Nothing may follow STARTTLS before the TLS handshake")
		return errors.New("imapd: data after STARTTLS")
	}
	if err := p.respond(cmd.tag, "OK Begin TLS negotiation now"); err != nil {
		return err
	}
	p.wmu.Lock()
	old := p.inner
	old.detached.Store(true)
	p.outer = tls.Server(p.raw, cfg)
	p.br.Reset(p.outer)
	p.tls = true
	p.inner = &innerConn{p: p, dropLine: true}
	p.out = outScan{}
	p.mode = inIdle
	p.wmu.Unlock()
	p.s.secureLn.push(p.inner)
	return io.EOF // ends the plain imapserver connection
}

// respond writes a status response.
func (p *proto) respond(tag, text string) error {
	return p.writeOut([]byte(tag + " " + text + "\r\n"))
}

func (p *proto) bad(tag, text string) error { return p.respond(tag, "BAD "+text) }

// connListener hands connections to an imapserver.Server.
type connListener struct {
	ch      chan net.Conn
	done    chan struct{}
	closed  sync.Once
	started chan struct{} // closed at the first Accept
	once    sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{}), started: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.started) })
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{} }

// literal limits for the commands the layer reads itself.
const maxLayerCommand = 64 << 10

// command is a command the layer reads itself: its line with each literal
// replaced by a reference to lits.
type command struct {
	tag, name string
	args      []byte // after the name
	lits      [][]byte
	pos       int
}

// readCommand reads a whole command (line and literals, maxLayerCommand in
// all). A command too long is answered BAD (nil command).
func (p *proto) readCommand(tag, name string) (*command, error) {
	cmd := &command{tag: tag, name: name}
	var line []byte
	total := 0
	tooLong := false
	for {
		l, err := p.readLine(maxLayerCommand - total)
		if err != nil && !errors.Is(err, errLineTooLong) {
			return nil, err
		}
		if err != nil {
			tooLong = true
			break
		}
		total += len(l)
		l = bytes.TrimSuffix(bytes.TrimSuffix(l, []byte("\n")), []byte("\r"))
		n, sync, ok := literalAnnounced(l)
		if !ok {
			line = append(line, l...)
			break
		}
		l = l[:bytes.LastIndexByte(l, '{')]
		if n > int64(maxLayerCommand-total) {
			if sync {
				// Refused: the client does not send it.
				return nil, p.bad(tag, "Literal too large for "+name)
			}
			// Already on its way: rather than read it all, end
			// the connection.
			p.respond("*", "BYE Literal too large for "+name)
			return nil, errors.New("imapd: non-synchronizing literal too large for " + name)
		}
		if sync {
			if err := p.writeOut([]byte("+ Ready for literal data\r\n")); err != nil {
				return nil, err
			}
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(p.br, lit); err != nil {
			return nil, err
		}
		total += int(n)
		line = append(line, l...)
		line = append(line, 0, byte(len(cmd.lits)>>8), byte(len(cmd.lits)))
		cmd.lits = append(cmd.lits, lit)
	}
	if tooLong {
		return nil, p.bad(tag, "Command line too long")
	}
	// Skip the tag and name.
	skip := len(tag) + 1 + len(name)
	if skip > len(line) {
		skip = len(line)
	}
	cmd.args = line[skip:]
	return cmd, nil
}

var errLineTooLong = errors.New("imapd: line too long")

// readLine reads a line (with its LF); over max bytes (max < 0: no bound,
// discarding) it reads to the line's end and returns errLineTooLong.
func (p *proto) readLine(max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := p.br.ReadSlice('\n')
		if max < 0 || len(line)+len(frag) > max {
			max = -1
			line = nil
		} else {
			line = append(line, frag...)
		}
		if err == nil {
			if max < 0 {
				return nil, errLineTooLong
			}
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// literal markers in command.args: 0, then the index in two bytes.

// end reports whether the arguments are all read.
func (c *command) end() bool { return c.pos >= len(c.args) }

// sp reads one space.
func (c *command) sp() bool {
	if c.pos < len(c.args) && c.args[c.pos] == ' ' {
		c.pos++
		return true
	}
	return false
}

// astring reads an atom, a quoted string or a literal.
func (c *command) astring() (string, bool) {
	if c.pos >= len(c.args) {
		return "", false
	}
	switch ch := c.args[c.pos]; ch {
	case 0:
		if c.pos+3 > len(c.args) {
			return "", false
		}
		i := int(c.args[c.pos+1])<<8 | int(c.args[c.pos+2])
		c.pos += 3
		return string(c.lits[i]), true
	case '"':
		var sb []byte
		for i := c.pos + 1; i < len(c.args); i++ {
			switch c.args[i] {
			case '\\':
				i++
				if i >= len(c.args) || (c.args[i] != '\\' && c.args[i] != '"') {
					return "", false
				}
				sb = append(sb, c.args[i])
			case '"':
				c.pos = i + 1
				return string(sb), true
			default:
				sb = append(sb, c.args[i])
			}
		}
		return "", false
	}
	start := c.pos
	for c.pos < len(c.args) && isAstringChar(c.args[c.pos]) {
		c.pos++
	}
	if c.pos == start {
		return "", false
	}
	return string(c.args[start:c.pos]), true
}

func isAstringChar(ch byte) bool {
	switch {
	case ch <= ' ' || ch >= 0x7f:
		return false
	case ch == '(' || ch == ')' || ch == '{' || ch == '%' || ch == '*' || ch == '"' || ch == '\\':
		return false
	}
	return true
}

// astring writes s as an atom if it can be one, else as quote does.
func astring(s string) string {
	for i := 0; i < len(s); i++ {
		if !isAstringChar(s[i]) {
			return quote(s)
		}
	}
	if s == "" {
		return quote(s)
	}
	return s
}

// quote writes s as an IMAP quoted string, or a literal if it cannot be
// one.
func quote(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' || s[i] == 0 {
			return "{" + strconv.Itoa(len(s)) + "}\r\n" + s
		}
	}
	var b []byte
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(append(b, '"'))
}
