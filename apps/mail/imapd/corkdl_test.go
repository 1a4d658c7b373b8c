package imapd

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// countConn counts the write deadlines put on a connection.
type countConn struct {
	net.Conn
	set int
}

func (c *countConn) SetWriteDeadline(t time.Time) error {
	c.set++
	return c.Conn.SetWriteDeadline(t)
}

// TestCorkDeadlines: the write deadlines imapserver asks around each
// response reach the socket only when bytes do, and not when the socket's
// is less than dlSlack earlier; a deadline earlier than the socket's goes on
// at once (a past one stops the write); a cleared one is cleared before the
// next write.
func TestCorkDeadlines(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go io.Copy(io.Discard, b)
	cc := &countConn{Conn: a}
	c := &corkConn{Conn: cc}

	// A thousand responses, corked, each between a deadline and its
	// clearing, as imapserver writes a FETCH: a handful of system calls.
	c.cork()
	for i := 0; i < 1000; i++ {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write([]byte("* 1 FETCH (FLAGS (\\Seen))\r\n")); err != nil {
			t.Fatal(err)
		}
		c.SetWriteDeadline(time.Time{})
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if cc.set > 4 {
		t.Errorf("%d write deadlines set for 1000 corked responses, want a few", cc.set)
	}

	// Uncorked too: one set, then the writes keep it.
	n := cc.set
	for i := 0; i < 100; i++ {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write([]byte("* OK\r\n")); err != nil {
			t.Fatal(err)
		}
		c.SetWriteDeadline(time.Time{})
	}
	if d := cc.set - n; d > 3 {
		t.Errorf("%d write deadlines set for 100 responses, want a few", d)
	}

	// A deadline in the past stops the next write, at once.
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.Write([]byte("late\r\n")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write after a past deadline: %v, want a timeout", err)
	}
	// Cleared, the next write goes through (the socket's deadline is
	// cleared before it).
	c.SetWriteDeadline(time.Time{})
	if _, err := c.Write([]byte("again\r\n")); err != nil {
		t.Errorf("write after clearing the deadline: %v", err)
	}
	// A later deadline than the socket's by more than dlSlack is put on
	// before the write.
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	c.SetWriteDeadline(time.Now().Add(time.Hour))
	if _, err := c.Write([]byte("later\r\n")); err != nil {
		t.Errorf("write after a later deadline: %v", err)
	}
}
