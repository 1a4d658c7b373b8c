package queue

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/store"
)

// fakeResolver answers every MX lookup with mx and every host with
// 127.0.0.1.
type fakeResolver struct{ mx []*net.MX }

func (r fakeResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) { return r.mx, nil }
func (r fakeResolver) LookupHost(ctx context.Context, host string) ([]string, error) {
	return []string{"127.0.0.1"}, nil
}

func setup(t *testing.T) (*store.Store, *mailstore.Store) {
	t.Helper()
	st, err := store.InitData(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(context.Background(), "alice", "password1", store.GitNone); err != nil {
		t.Fatal(err)
	}
	ms, err := mailstore.Open(st, mailstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close(); st.Close() })
	return st, ms
}

func enqueue(t *testing.T, ms *mailstore.Store, from, to string) {
	t.Helper()
	err := ms.Update(context.Background(), "alice", "queue", func(w *mailstore.Writer) error {
		_, err := Enqueue(w.Tx(), from, []string{to}, []byte("From: "+from+"\r\nSubject: out\r\n\r\nbody\r\n"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func inbox(t *testing.T, ms *mailstore.Store) []string {
	u, err := ms.User(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := u.Mailbox("INBOX")
	v, _ := mb.Open(true)
	defer v.Close()
	var out []string
	for _, it := range v.Items(imap.SeqSet{{Start: 1, Stop: 0}}) {
		b, _ := ms.ReadRaw(mb, it.Msg)
		out = append(out, string(b))
	}
	return out
}

func TestBounces(t *testing.T) {
	// A port where nothing listens.
	port := strconv.Itoa(testutil.FreePort(t))
	for _, tc := range []struct {
		name   string
		mx     []*net.MX
		window time.Duration
		want   string
		full   bool // the sender's mailbox is at its quota
	}{
		// Temporary failures past the retry window bounce.
		{"retry window", []*net.MX{{Host: "mx.remote.test.", Pref: 10}}, time.Nanosecond, "connection refused", false},
		// A null MX (RFC 7505) fails at once.
		{"null MX", []*net.MX{{Host: ".", Pref: 0}}, time.Hour, "null MX", false},
		// The bounce reaches a sender whose mailbox is full (quota):
		// it is the only word that the mail did not go.
		{"sender over quota", []*net.MX{{Host: ".", Pref: 0}}, time.Hour, "null MX", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, ms := setup(t)
			q := New(Options{Mail: ms, Domains: []string{"example.org"}, Resolver: fakeResolver{tc.mx}, Port: port,
				Backoff: []time.Duration{time.Hour}, RetryWindow: tc.window})
			before := 0
			if tc.full {
				fillToQuota(t, st, ms)
				before = 1
			}
			enqueue(t, ms, "alice@example.org", "bob@remote.test")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { q.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			deadline := time.Now().Add(10 * time.Second)
			for {
				es, _ := List(st, nil)
				if msgs := inbox(t, ms); len(es) == 0 && len(msgs) == before+1 {
					if b := msgs[before]; !strings.Contains(b, "bob@remote.test") || !strings.Contains(b, tc.want) {
						t.Errorf("bounce: %q", b)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("no bounce: queue %+v", es)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestBackoff: a temporary failure within the window is retried later, not
// bounced.
func TestBackoff(t *testing.T) {
	port := strconv.Itoa(testutil.FreePort(t))
	st, ms := setup(t)
	q := New(Options{Mail: ms, Domains: []string{"example.org"}, Resolver: fakeResolver{[]*net.MX{{Host: "mx.remote.test", Pref: 1}}},
		Port: port, Backoff: []time.Duration{time.Hour}})
	enqueue(t, ms, "alice@example.org", "bob@remote.test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		es, _ := List(st, nil)
		if len(es) == 1 && es[0].Attempts == 1 {
			if d := time.Until(es[0].Next); d < 50*time.Minute {
				t.Errorf("next attempt in %v, want about an hour", d)
			}
			if len(inbox(t, ms)) != 0 {
				t.Error("bounced within the retry window")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no attempt recorded: %+v", es)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fillToQuota gives alice one message and a quota of one message.
func fillToQuota(t *testing.T, st *store.Store, ms *mailstore.Store) {
	t.Helper()
	ctx := context.Background()
	u, err := ms.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := u.Mailbox("INBOX")
	if err := ms.Update(ctx, "alice", "fill", func(w *mailstore.Writer) error {
		_, err := w.Append(mb, []byte("Subject: old\r\n\r\nold\r\n"), nil, time.Time{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetQuota(ctx, "alice", store.Quota{Messages: 1}); err != nil {
		t.Fatal(err)
	}
	if err := u.CheckQuota(1); !mailstore.IsOverQuota(err) {
		t.Fatalf("alice is not at her quota: %v", err)
	}
}
