package images

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/store"
)

// hostileScript plays, from the host, what issue 21 found to take a mail
// appliance down before any login, then checks as a real client that
// nothing was lost:
//
//  1. H1: three 40 MB messages sent at once to port 25 (no login). Each
//     must be answered: 250, or a temporary refusal (4xx) when the
//     appliance bounds concurrent transfers; at least one is accepted.
//  2. H2: fifty parallel IMAPS logins with a wrong password, while the
//     rightful owner logs in with the right one (slowed down, never shut
//     out; its client retries a refused connection, since behind QEMU's
//     user network every client shares one address and its connection
//     cap).
//  3. The owner reads back every accepted message whole (sha256 of its
//     body) over IMAPS.
//
// It prints "ok" and a line per phase; the test bounds nothing in time
// but the whole run (a hung appliance).
const hostileScript = `
import hashlib, imaplib, smtplib, ssl, sys, threading, time
host, smtp_port, imaps_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

def body(n, size):
    line = ("message %d: a large body, line after line, to be spooled, not held " % n).ljust(78, "x") + "\r\n"
    return (line * (size // len(line))).encode()

accepted, refused, errors = {}, [], []
# The sender's domain is reserved (.test) and has no DNS records: the
# appliance's inbound SPF/DMARC checks find no policy, wherever this runs.
def send(n):
    b = body(n, 40 << 20)
    msg = b"From: mallory@example.test\r\nTo: alice@localhost\r\nSubject: big %d\r\n\r\n" % n + b
    try:
        s = smtplib.SMTP(host, smtp_port, timeout=900)
        s.sendmail("mallory@example.test", ["alice@localhost"], msg)
        s.quit()
        accepted[n] = hashlib.sha256(b).hexdigest()
    except smtplib.SMTPResponseException as e:
        if 400 <= e.smtp_code < 500:
            refused.append((n, e.smtp_code))
        else:
            errors.append((n, repr(e)))
    except Exception as e:
        errors.append((n, repr(e)))
t0 = time.time()
ts = [threading.Thread(target=send, args=(n,)) for n in range(3)]
for t in ts: t.start()
for t in ts: t.join()
print("H1: accepted %s, refused %s, errors %s in %.1f s" % (sorted(accepted), refused, errors, time.time() - t0))
assert not errors and accepted, ("H1", errors, refused)

bad, good = [], []
def wrong(i):
    try:
        m = imaplib.IMAP4_SSL(host, imaps_port, ssl_context=ctx, timeout=900)
        try:
            m.login("alice", "wrong %d" % i)
            bad.append("wrong password accepted")
        except imaplib.IMAP4.error:
            pass
        m.logout()
    except Exception as e:
        # A refused or closed connection is a fine answer to an attacker.
        pass
def right():
    # Through QEMU's user network every client comes from one address
    # (10.0.2.2), so the attackers fill that host's connection cap and its
    # logins in flight: the owner's client is refused a connection, or
    # answered [UNAVAILABLE], and tries again, as mail clients do. A wrong
    # answer or AUTHENTICATIONFAILED for the right password fails.
    last = None
    for attempt in range(300):
        try:
            m = imaplib.IMAP4_SSL(host, imaps_port, ssl_context=ctx, timeout=900)
        except (OSError, imaplib.IMAP4.abort) as e:
            last = e
            time.sleep(1)
            continue
        try:
            m.login("alice", "correct horse")
            m.logout()
            good.append(attempt)
        except imaplib.IMAP4.error as e:
            if b"UNAVAILABLE" not in str(e).encode():
                bad.append("owner: " + repr(e))
                return
            # A temporary refusal while the attack from the same address
            # has logins in flight: try again.
            last = e
            time.sleep(1)
            continue
        except Exception as e:
            bad.append("owner: " + repr(e))
        return
    bad.append("owner: no connection: " + repr(last))
t0 = time.time()
ts = [threading.Thread(target=wrong, args=(i,)) for i in range(50)]
for t in ts: t.start()
r = threading.Thread(target=right)
r.start()
for t in ts: t.join()
r.join()
print("H2: 50 wrong logins and the owner's in %.1f s (the owner connected at try %s)" % (time.time() - t0, good))
assert not bad and good, ("H2", bad)

# The owner's client, after the attack: every accepted message is whole.
m = None
for attempt in range(60):
    try:
        m = imaplib.IMAP4_SSL(host, imaps_port, ssl_context=ctx, timeout=900)
        m.login("alice", "correct horse")
        break
    except imaplib.IMAP4.error as e:
        # Slowed down after the failures above: try again, never shut out.
        print("owner login: %s, again" % e)
        m = None
        time.sleep(5)
assert m is not None, "the owner could not log in"
typ, data = m.select("INBOX")
assert typ == "OK" and int(data[0]) == len(accepted), ("select", typ, data, sorted(accepted))
for i in range(1, len(accepted) + 1):
    typ, data = m.fetch(str(i), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
    assert typ == "OK", (typ, data)
    subject = data[0][1].decode().strip()
    text = data[1][1]
    n = int(subject.split()[-1])
    assert hashlib.sha256(text).hexdigest() == accepted[n], ("message %d changed" % n, len(text))
m.logout()
print("ok")
`

// TestBootMailHostile boots the mail appliance at its board's memory
// (256 MiB) and sends it the traffic that issue 21 found to take it down
// before any login: large messages on port 25 at once (H1) and parallel
// wrong logins (H2). The appliance must keep serving (the rightful owner
// logs in and reads every accepted message whole), must not run out of
// memory (no OOM line on the console), and must power off cleanly with a
// store that git fsck accepts.
func TestBootMailHostile(t *testing.T) {
	needMailAppliance(t)
	needTool(t, "mkfs.ext4", "e2fsprogs")
	needTool(t, "python3", "python3")
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	dir, m := build(t, "mail", "qemu-x86_64")
	disk := aliceDisk(t, 1<<30)
	smtpAddr := testutil.FreeAddr(t)
	imapsAddr := testutil.FreeAddr(t)
	ctx := context.Background()
	vm, err := launch.StartQEMU(ctx, qemuImage(t, dir, m), launch.QEMU{
		Disk: disk, MemoryMiB: 256,
		Forwards:     []launch.Forward{{Host: smtpAddr, Guest: 25}, {Host: imapsAddr, Guest: 993}},
		ExtraCmdline: []string{"nymote.net=" + guestNet},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, vm)
	bctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	for _, l := range []string{"nymote: mail smtp listening on", "nymote: mail imaps listening on"} {
		if _, err := vm.WaitLine(bctx, l); err != nil {
			t.Fatal(err)
		}
	}
	_, smtpPort, _ := strings.Cut(smtpAddr, ":")
	_, imapsPort, _ := strings.Cut(imapsAddr, ":")
	out, err := exec.Command("python3", "-c", hostileScript, "127.0.0.1", smtpPort, imapsPort).CombinedOutput()
	t.Logf("hostile client:\n%s", out)
	if err != nil {
		t.Fatalf("hostile client: %v", err)
	}
	for _, bad := range []string{"Out of memory", "oom-kill", "Kernel panic", "panic:", "fatal error:"} {
		if strings.Contains(vm.Console(), bad) {
			t.Errorf("console shows %q:\n%s", bad, vm.Console())
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, bootTimeout)
	defer pcancel()
	if err := vm.PowerOff(pctx); err != nil {
		t.Fatal(err)
	}
	exported := filepath.Join(t.TempDir(), "out")
	if err := datadisk.Export(ctx, disk, exported); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("git", "--git-dir", filepath.Join(exported, store.RepoDir), "fsck", "--strict").CombinedOutput(); err != nil {
		t.Errorf("git fsck on the exported store: %v\n%s", err, b)
	}
}
