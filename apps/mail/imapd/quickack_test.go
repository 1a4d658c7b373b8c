package imapd

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestCmdTracker checks when a read leaves a command unfinished, the
// moments an immediate ACK is asked for (quickack.go).
func TestCmdTracker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reads []string
		want  []bool // after each read: ask for an immediate ACK?
	}{
		{"whole command", []string{"a NOOP\r\n"}, []bool{false}},
		{"command in pieces", []string{"a NO", "OP\r\n"}, []bool{true, false}},
		{"two commands in one read", []string{"a NOOP\r\nb NOOP\r\n"}, []bool{false}},
		{"synchronizing literal: the client waits for +", []string{"a APPEND INBOX {5}\r\n"}, []bool{false}},
		{"literal then its CRLF apart (imaplib)", []string{"a APPEND INBOX {5}\r\n", "hello", "\r\n"}, []bool{false, true, false}},
		{"literal ending in CRLF, then the command's CRLF", []string{"a APPEND INBOX {7}\r\n", "hello\r\n", "\r\n"}, []bool{false, true, false}},
		{"literal in pieces", []string{"a APPEND INBOX {10}\r\n", "hello", "world", "\r\n"}, []bool{false, true, true, false}},
		{"non-synchronizing literal", []string{"a APPEND INBOX {5+}\r\n"}, []bool{true}},
		{"LITERAL+ in one read", []string{"a APPEND INBOX {5+}\r\nhello\r\n"}, []bool{false}},
		{"literal8", []string{"a APPEND INBOX UTF8 (~{3}\r\n", "abc", ")\r\n"}, []bool{false, true, false}},
		{"literal-looking text inside a literal", []string{"a APPEND INBOX {6}\r\n", "{99}\r\n", "\r\n"}, []bool{false, true, false}},
		{"empty literal", []string{"a LOGIN {0}\r\n", " x\r\n"}, []bool{true, false}},
		{"after STARTTLS every read", []string{"a STARTTLS\r\n", "\x16\x03\x01", "\x17\x03\x03\r\n"}, []bool{false, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr cmdTracker
			for i, r := range tc.reads {
				if got := tr.feed([]byte(r)); got != tc.want[i] {
					t.Errorf("after read %d %q: got %v, want %v", i, r, got, tc.want[i])
				}
			}
		})
	}
}

// ackRecorder counts the immediate ACKs asked for on a connection.
type ackRecorder struct {
	net.Conn
	n *atomic.Int64
}

func (c ackRecorder) quickAck() error { c.n.Add(1); return nil }

type ackListener struct {
	net.Listener
	n atomic.Int64
}

func (l *ackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return ackRecorder{c, &l.n}, nil
}

// TestQuickAckAfterLiteral drives a server connection the way imaplib
// does (literal, then its CRLF in a second write) and checks that the
// server asks for an immediate ACK once the literal is read and the CRLF
// is still to come, and never after a whole command.
func TestQuickAckAfterLiteral(t *testing.T) {
	h := start(t)
	srv := New(Options{Mail: h.ms, InsecureAuth: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al := &ackListener{Listener: ln}
	go srv.Serve(al)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute)) // bounds a hang only
	r := bufio.NewReader(conn)
	readUntil := func(prefix string) {
		t.Helper()
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v", prefix, err)
			}
			if strings.HasPrefix(l, prefix) {
				return
			}
		}
	}
	readUntil("* OK")
	fmt.Fprintf(conn, "a LOGIN alice password-alice\r\n")
	readUntil("a OK")
	msg := "Subject: quick\r\n\r\nack\r\n"
	fmt.Fprintf(conn, "b APPEND INBOX {%d}\r\n", len(msg))
	readUntil("+")
	if n := al.n.Load(); n != 0 {
		t.Fatalf("after whole commands: %d immediate ACKs asked for, want 0", n)
	}
	fmt.Fprint(conn, msg)
	// The server reads the literal, then waits for the CRLF: it must ask
	// for the ACK now, while the client's CRLF waits for it.
	deadline := time.Now().Add(2 * time.Minute)
	for al.n.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the literal was read without an immediate ACK")
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Fprint(conn, "\r\n")
	readUntil("b OK")
	before := al.n.Load()
	fmt.Fprintf(conn, "c NOOP\r\n")
	readUntil("c OK")
	if n := al.n.Load(); n != before {
		t.Errorf("immediate ACKs asked for after a whole NOOP: %d, want none", n-before)
	}
}
