package images

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/nymote/nymote/apps/mail/mailstore"
	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/store"
)

// replicaNode is one appliance of TestBootReplicas.
type replicaNode struct {
	name, board string
	dir         string
	m           *Manifest
	disk        string
	cmdline     []string
	// Host ends of the forwards: smtp (25), imaps (993), https (443).
	smtp, imaps, https string
	// forwards, when set, replace those three (an appliance other than
	// mail's).
	forwards []launch.Forward
	// in is the fault proxy that the other node reaches this one's
	// replication endpoint through (10.0.2.2:PORT in the guest).
	in *replica.FaultProxy
	vm *launch.VM
}

func (n *replicaNode) boot(t *testing.T) {
	t.Helper()
	fw := n.forwards
	if fw == nil {
		fw = []launch.Forward{{Host: n.smtp, Guest: 25}, {Host: n.imaps, Guest: 993}, {Host: n.https, Guest: 443}}
	}
	vm, err := launch.StartQEMU(context.Background(), qemuImage(t, n.dir, n.m), launch.QEMU{
		Disk: n.disk, MemoryMiB: 256,
		Forwards:     fw,
		ExtraCmdline: append([]string{"nymote.net=" + guestNet}, n.cmdline...),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, vm)
	n.vm = vm
}

func (n *replicaNode) wait(t *testing.T, ctx context.Context, line string) {
	t.Helper()
	if _, err := n.vm.WaitLine(ctx, line); err != nil {
		t.Fatalf("%s (%s): waiting for %q: %v\nconsole:\n%s", n.name, n.board, line, err, tail(n.vm.Console(), 60))
	}
}

func (n *replicaNode) powerOff(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := n.vm.PowerOff(ctx); err != nil {
		t.Fatalf("%s: power off: %v", n.name, err)
	}
}

// peerURL is n's replication endpoint as its peer reaches it from the
// guest: the host (10.0.2.2) at n's fault proxy.
func (n *replicaNode) peerURL() string {
	_, port, _ := strings.Cut(n.in.Addr(), ":")
	return "https://10.0.2.2:" + port + "/replica"
}

// replicaPair makes the data disks (of size bytes) of two appliances that
// are peers: a's store holds alice (password) and b as its peer, with
// prepare's additions (if any) and a's TLS certificate; b's disk holds
// only its certificate, the token shared with a and a's CA, and b boots
// with the options that make it clone a at its first boot. Each
// certificate is for the address its peer dials (10.0.2.2) and the one
// the test reaches it at (127.0.0.1), signed by a CA of the node's own:
// those are returned, a's and b's.
func replicaPair(t *testing.T, a, b *replicaNode, token, password string, size int64, prepare func(*store.Store)) (caA, caB []byte) {
	t.Helper()
	ctx := context.Background()
	caA, certA, keyA := testutil.CAFiles(t, "10.0.2.2", "127.0.0.1", "localhost")
	caB, certB, keyB := testutil.CAFiles(t, "10.0.2.2", "127.0.0.1", "localhost")
	dataA := t.TempDir()
	st, err := store.InitData(dataA, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(ctx, "alice", password, store.GitNone); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(st)
	}
	if err := replica.SetSelf(st, a.name); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.AddPeer(ctx, st, b.name, b.peerURL(), replica.AddOptions{Token: token, CA: caB}); err != nil {
		t.Fatal(err)
	}
	for f, b := range map[string][]byte{"tls/cert.pem": certA, "tls/key.pem": keyA} {
		if err := st.WriteNodeFile(f, b); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	a.disk = filepath.Join(t.TempDir(), a.name+".img")
	if err := datadisk.Create(ctx, dataA, a.disk, size); err != nil {
		t.Fatal(err)
	}
	dataB := t.TempDir()
	peer := "peer-" + a.name
	for f, b := range map[string][]byte{"node/tls/cert.pem": certB, "node/tls/key.pem": keyB, peer + ".token": []byte(token + "\n"), peer + ".ca.pem": caA} {
		p := filepath.Join(dataB, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b.disk = filepath.Join(t.TempDir(), b.name+".img")
	if err := datadisk.Create(ctx, dataB, b.disk, size); err != nil {
		t.Fatal(err)
	}
	b.cmdline = []string{"nymote.peer=" + a.name + "=" + a.peerURL(), "nymote.peer-as=" + b.name, "nymote.peer-token=" + peer + ".token", "nymote.peer-ca=" + peer + ".ca.pem"}
	return caA, caB
}

// TestBootReplicas (issue 16): two mail appliances under QEMU (TCG), on
// two boards, kept in sync as peers. Node a (qemu-arm64) has a data disk
// with the user alice (her mailboxes made) and b recorded as its peer (as
// `nymote peer add` writes it); node b (microvm-x86_64) is new: its data disk holds only its
// TLS certificate, the token shared with a and a's CA, and it boots with
// nymote.peer=a=URL nymote.peer-as=b nymote.peer-token=FILE
// nymote.peer-ca=FILE, so that its first sync clones a's store. Each
// reaches the other through QEMU's user network: the guest dials the host
// (10.0.2.2) at a fault proxy of this test, which forwards to the other
// VM's forwarded HTTPS port (where the replication endpoint is mounted).
// Mail delivered by SMTP to b is fetched by IMAP from a. Then b is
// powered off (after alice logged in on b with the password set on a,
// whose hash replicated) and a takes a message meanwhile; the link is cut,
// b boots again and takes a message of its own; the link heals and both converge: IMAP
// on each shows the same three messages, and a message delivered to a
// afterwards reaches b live. Three boots under TCG, two of them at once:
// about 45 s of wall time here besides the two builds that TestBootMail
// shares (the test binary builds each image once).
func TestBootReplicas(t *testing.T) {
	needMailAppliance(t)
	needTool(t, "mkfs.ext4", "e2fsprogs")
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	needTool(t, "qemu-system-aarch64", "qemu-system-arm")
	start := time.Now()
	ctx := context.Background()
	const token = "qemu-replica-token-0123456789abcdef"
	const password = "correct horse"

	a := &replicaNode{name: "a", board: "qemu-arm64"}
	b := &replicaNode{name: "b", board: "microvm-x86_64"}
	for _, n := range []*replicaNode{a, b} {
		n.dir, n.m = build(t, "mail", n.board)
		n.smtp, n.imaps, n.https = testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
		var err error
		if n.in, err = replica.NewFaultProxy(n.https, 1); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.in.Close)
	}
	t.Logf("images built in %v", time.Since(start).Round(time.Second))
	replicaPair(t, a, b, token, password, 256<<20, func(st *store.Store) {
		// alice has used a already: her mailboxes exist (default
		// mailboxes are made at a user's first use, with ids of their
		// own: two nodes that each saw her first would make two
		// INBOXes; see mailstore).
		ms, err := mailstore.Open(st, mailstore.Options{RawCacheBytes: -1})
		if err != nil {
			t.Fatal(err)
		}
		if u, err := ms.User(ctx, "alice"); err != nil {
			t.Fatal(err)
		} else if _, err := u.Mailbox("INBOX"); err != nil {
			t.Fatal(err)
		}
		if err := ms.Close(); err != nil {
			t.Fatal(err)
		}
	})

	// Both at once: b's clone is tried again until a serves.
	t0 := time.Now()
	a.boot(t)
	b.boot(t)
	bctx, cancel := context.WithTimeout(ctx, 2*bootTimeout)
	defer cancel()
	a.wait(t, bctx, "nymote: mail imaps listening on")
	b.wait(t, bctx, "nymote: replica: cloned from a: head ")
	b.wait(t, bctx, "nymote: mail smtp listening on")
	// While it cloned, b's ports answered with a temporary refusal; it
	// serves from this line on.
	b.wait(t, bctx, "nymote: mail: done copying the store; serving")
	t.Logf("both booted, b cloned from a: %v", time.Since(t0).Round(time.Second))

	t1 := time.Now()
	deliverTo(t, b, "delivered to b")
	waitSubjects(t, a, password, []string{"delivered to b"})
	t.Logf("SMTP to b, seen by IMAP on a: %v", time.Since(t1).Round(100*time.Millisecond))

	// alice logs in on b with the password she set on a: its hash came
	// from a through the replicas' credentials exchange, not the clone.
	waitSubjects(t, b, password, []string{"delivered to b"})
	// b off; a takes a message meanwhile.
	b.powerOff(t)
	deliverTo(t, a, "delivered to a while b was off")
	// b boots cut off from a, and takes a message of its own.
	a.in.SetCut(true)
	b.in.SetCut(true)
	t2 := time.Now()
	b.boot(t)
	bctx2, cancel2 := context.WithTimeout(ctx, bootTimeout)
	defer cancel2()
	b.wait(t, bctx2, "nymote: mail smtp listening on")
	t.Logf("b booted again: %v", time.Since(t2).Round(time.Second))
	deliverTo(t, b, "delivered to b while cut off")
	waitSubjects(t, b, password, []string{"delivered to b", "delivered to b while cut off"})
	if got, err := subjectsAt(a.imaps, password); err != nil || !slices.Equal(got, []string{"delivered to a while b was off", "delivered to b"}) {
		t.Fatalf("a before the heal: %v, %v", got, err)
	}
	// Heal: both converge.
	t3 := time.Now()
	a.in.SetCut(false)
	b.in.SetCut(false)
	all := []string{"delivered to a while b was off", "delivered to b", "delivered to b while cut off"}
	waitSubjects(t, a, password, all)
	waitSubjects(t, b, password, all)
	t.Logf("converged after the heal: %v", time.Since(t3).Round(100*time.Millisecond))
	// The clone gives UIDs of its own, under a UIDVALIDITY of its own.
	if va, vb := uidValidityAt(t, a, password), uidValidityAt(t, b, password); va == vb {
		t.Errorf("INBOX UIDVALIDITY %d on both nodes: want the clone's own", va)
	}
	// And live again.
	t4 := time.Now()
	deliverTo(t, a, "delivered to a after the heal")
	waitSubjects(t, b, password, append([]string{"delivered to a after the heal"}, all...))
	t.Logf("SMTP to a, seen by IMAP on b: %v", time.Since(t4).Round(100*time.Millisecond))
	a.powerOff(t)
	b.powerOff(t)
	t.Logf("total %v", time.Since(start).Round(time.Second))
}

// deliverTo sends alice@localhost a message with subject by SMTP to n.
func deliverTo(t *testing.T, n *replicaNode, subject string) {
	t.Helper()
	c, err := smtp.Dial(n.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "From: Bob <bob@example.net>\r\nTo: alice@localhost\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.net>\r\n\r\nhello\r\n"
	if err := c.SendMail("bob@example.net", []string{"alice@localhost"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("SMTP to %s: %v", n.name, err)
	}
}

// subjectsAt lists the subjects of alice's INBOX over IMAPS at addr,
// sorted.
func subjectsAt(addr, password string) ([]string, error) {
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login("alice", password).Wait(); err != nil {
		return nil, err
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, err
	}
	var out []string
	if sel.NumMessages > 0 {
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true}).Collect()
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			out = append(out, m.Envelope.Subject)
		}
	}
	slices.Sort(out)
	c.Logout()
	return out, nil
}

// waitSubjects waits until IMAP on n shows want (sorted) in INBOX; the
// bound only fails a hung test.
func waitSubjects(t *testing.T, n *replicaNode, password string, want []string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(4 * time.Minute)
	var got []string
	var err error
	for time.Now().Before(deadline) {
		if got, err = subjectsAt(n.imaps, password); err == nil && slices.Equal(got, want) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err == nil {
		err = errors.New("different messages")
	}
	t.Fatalf("%s: INBOX %q (%v), want %q\nconsole:\n%s", n.name, got, err, want, tail(n.vm.Console(), 40))
}

// uidValidityAt is the UIDVALIDITY of alice's INBOX on n.
func uidValidityAt(t *testing.T, n *replicaNode, password string) uint32 {
	t.Helper()
	c, err := imapclient.DialTLS(n.imaps, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", password).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return sel.UIDValidity
}
