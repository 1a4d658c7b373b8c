package imapd

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// discardConn is a net.Conn that drops what is written.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkLayerOutput is the cost of the protocol layer on what
// imapserver writes (following lines and literals), for FETCH responses of
// envelopes (many short lines) and of bodies (literals), in the 4 KiB
// writes of imapserver's buffered writer.
func BenchmarkLayerOutput(b *testing.B) {
	var env, body strings.Builder
	for i := 1; env.Len() < 1<<20; i++ {
		fmt.Fprintf(&env, "* %d FETCH (UID %d FLAGS (\\Seen) ENVELOPE (\"Mon, 02 Jan 2006 15:04:05 +0000\" \"subject %d\" ((\"A\" NIL \"a\" \"x.org\")) NIL NIL ((NIL NIL \"b\" \"x.org\")) NIL NIL NIL \"<m%d@x>\"))\r\n", i, i, i, i)
	}
	msg := strings.Repeat("line of a message body, as it is sent\r\n", 200)
	for i := 1; body.Len() < 1<<20; i++ {
		fmt.Fprintf(&body, "* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n", i, i, len(msg), msg)
	}
	for _, c := range []struct{ name, data string }{{"envelopes", env.String()}, {"bodies", body.String()}} {
		b.Run(c.name, func(b *testing.B) {
			p := &proto{outer: discardConn{}}
			in := &innerConn{p: p}
			data := []byte(c.data)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				for off := 0; off < len(data); off += 4096 {
					end := min(off+4096, len(data))
					if _, err := p.write(in, data[off:end]); err != nil {
						b.Fatal(err)
					}
				}
			}
			if p.out.mid || p.out.lit != 0 {
				b.Fatalf("framing lost: mid %v, literal %d", p.out.mid, p.out.lit)
			}
		})
	}
}
