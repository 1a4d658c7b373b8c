package queue

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/nymote/nymote/apps/mail/mtasts"
	"github.com/nymote/nymote/internal/testutil"
)

// recorder is an SMTP backend that records the messages it gets and
// whether each came over TLS.
type recorder struct {
	mu   sync.Mutex
	msgs []string
	tls  []bool
}

type recSession struct {
	r   *recorder
	tls bool
}

func (r *recorder) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, ok := c.TLSConnectionState()
	return &recSession{r: r, tls: ok}, nil
}
func (s *recSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *recSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *recSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, string(b))
	s.r.tls = append(s.r.tls, s.tls)
	s.r.mu.Unlock()
	return nil
}
func (s *recSession) Reset()        {}
func (s *recSession) Logout() error { return nil }

func (r *recorder) got() ([]string, []bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string{}, r.msgs...), append([]bool{}, r.tls...)
}

// TestMTASTS: to a domain whose policy says enforce, a server without
// STARTTLS, or with a certificate that does not verify, gets nothing: the
// message waits in the queue. With a valid certificate it is delivered
// over TLS. Under testing mode, or an MX the policy does not name, as the
// policy says.
func TestMTASTS(t *testing.T) {
	pool, good := testutil.CA(t, "mx.remote.test")
	_, wrongName := testutil.CA(t, "other.test")
	_, untrusted := testutil.CA(t, "mx.remote.test")
	for _, tc := range []struct {
		name      string
		cert      *tls.Certificate // nil: no STARTTLS
		mode      string
		mx        string
		delivered bool
		overTLS   bool
	}{
		{"enforce, no STARTTLS", nil, mtasts.Enforce, "mx.remote.test", false, false},
		{"enforce, certificate for another name", &wrongName, mtasts.Enforce, "mx.remote.test", false, false},
		{"enforce, certificate of an untrusted CA", &untrusted, mtasts.Enforce, "mx.remote.test", false, false},
		{"enforce, MX not in the policy", &good, mtasts.Enforce, "mx.elsewhere.test", false, false},
		{"enforce, valid certificate", &good, mtasts.Enforce, "mx.remote.test", true, true},
		{"testing, no STARTTLS", nil, mtasts.Testing, "mx.remote.test", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			srv := smtp.NewServer(rec)
			srv.Domain = "mx.remote.test"
			if tc.cert != nil {
				srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*tc.cert}}
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			defer srv.Close()
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			policy := &mtasts.Policy{ID: "1", Mode: tc.mode, MX: []string{"mx.remote.test"}, MaxAge: time.Hour}
			st, ms := setup(t)
			q := New(Options{Mail: ms, Domains: []string{"example.org"}, Resolver: fakeResolver{[]*net.MX{{Host: tc.mx + ".", Pref: 10}}},
				Port: port, Backoff: []time.Duration{time.Hour},
				STS: func(ctx context.Context, domain string) (*mtasts.Policy, error) {
					if domain != "remote.test" {
						t.Errorf("policy of %q", domain)
					}
					return policy, nil
				}, STSRootCAs: pool})
			enqueue(t, ms, "alice@example.org", "bob@remote.test")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { q.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			deadline := time.Now().Add(2 * time.Minute) // only a hung test
			for {
				es, _ := List(st, nil)
				msgs, tlss := rec.got()
				if tc.delivered && len(es) == 0 {
					if len(msgs) != 1 || tlss[0] != tc.overTLS || !strings.Contains(msgs[0], "Subject: out") {
						t.Errorf("delivered %d messages, TLS %v; want 1, TLS %v", len(msgs), tlss, tc.overTLS)
					}
					return
				}
				if !tc.delivered && len(es) == 1 && es[0].Attempts >= 1 {
					if len(msgs) != 0 {
						t.Errorf("the message went out (TLS %v) against the enforce policy", tlss)
					}
					if len(inbox(t, ms)) != 0 {
						t.Error("bounced: want it deferred")
					}
					t.Logf("deferred: %+v", es[0])
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("timed out: queue %+v, delivered %d", es, len(msgs))
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
