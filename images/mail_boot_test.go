package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/boards"
	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/store"
)

// needMailAppliance skips unless apps/mail is an appliance program.
func needMailAppliance(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sourceRoot, "apps", "mail", "main.go"))
	if err != nil || !strings.Contains(string(b), "appliance.Main") {
		t.Skip("apps/mail is not an appliance program (its main does not call appliance.Main) in this tree")
	}
}

// TestBootMail boots the mail appliance under QEMU (TCG) with a data disk
// holding a user, logs in over the forwarded IMAPS port with a real IMAP
// client, APPENDs a message, powers off through QMP, boots again from the
// same disk and finds the message; the exported store passes git fsck. On
// microvm-x86_64 (our own kernel) it does the same; on the other boards it
// boots once (login, APPEND, power off), to keep the test time down:
// qemu-arm64 (our own arm64 kernel); the 32-bit ARM boards with Debian's armmp
// kernel, qemu-armv7 (virt) and cubieboard (QEMU's Allwinner A10, direct
// kernel boot with a seeded device tree, the disk in its SD card slot, no
// power button: the power is cut); and the Xen PVH image, booted by QEMU
// through the kernel's PVH entry with virtio devices.
func TestBootMail(t *testing.T) {
	needMailAppliance(t)
	needTool(t, "mkfs.ext4", "e2fsprogs")
	needTool(t, "python3", "python3")
	for _, tc := range []struct {
		board string
		boots int
	}{{"qemu-x86_64", 2}, {"microvm-x86_64", 2}, {"qemu-arm64", 1}, {"qemu-armv7", 1}, {"cubieboard", 1}, {"xen-pvh-x86_64", 1}} {
		t.Run(tc.board, func(t *testing.T) { bootMail(t, tc.board, tc.boots) })
	}
}

func bootMail(t *testing.T, board string, boots int) {
	dir, m := build(t, "mail", board)
	ctx := context.Background()
	disk := aliceDisk(t, 256<<20)
	const subject = "survives a reboot"
	for n := 1; n <= boots; n++ {
		vm, addr := boot(t, dir, m, disk, 993)
		bctx, cancel := context.WithTimeout(ctx, bootTimeout)
		if _, err := vm.WaitLine(bctx, "nymote: mail imaps listening on"); err != nil {
			cancel()
			t.Fatal(err)
		}
		if out, err := imapSession(addr, n == 1, subject); err != nil {
			cancel()
			t.Fatalf("boot %d: IMAP: %v\n%s", n, err, out)
		}
		if b, _ := boards.Get(board); b.QEMU.NoPowerButton {
			// Acknowledged writes are on disk: cutting the power
			// loses nothing, and the journal keeps ext4 clean.
			vm.Kill()
		} else if err := vm.PowerOff(bctx); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		if l, err := vm.WaitLine(ctx, " ready at "); err == nil {
			t.Logf("boot %d: %s", n, l.Text)
		}
	}
	if b, _ := boards.Get(board); b.QEMU.NoPowerButton {
		// After the power cut the journal needs replaying, as on a
		// real board that lost power: e2fsck does it (exit status 1:
		// it fixed something).
		e2fsck, err := datadisk.LookTool("e2fsck")
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(e2fsck, "-fy", disk).CombinedOutput(); err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
				t.Fatalf("e2fsck after the power cut: %v\n%s", err, out)
			}
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := datadisk.Export(ctx, disk, out); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("git", "--git-dir", filepath.Join(out, store.RepoDir), "fsck", "--strict").CombinedOutput(); err != nil {
		t.Errorf("git fsck on the exported store: %v\n%s", err, b)
	}
}

// aliceDisk makes a data disk of size bytes whose store has the user
// alice (password "correct horse"), as imapScript logs in.
func aliceDisk(t *testing.T, size int64) string {
	t.Helper()
	ctx := context.Background()
	data := t.TempDir()
	s, err := store.InitData(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, "alice", "correct horse", store.GitNone); err != nil {
		t.Fatal(err)
	}
	s.Close()
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := datadisk.Create(ctx, data, disk, size); err != nil {
		t.Fatal(err)
	}
	return disk
}

// imapScript is a real IMAP client session (Python's imaplib over TLS):
// log in, APPEND a message when asked, and check that INBOX holds exactly
// one message with the subject, and that its 256 KiB body comes back whole
// (the appliance then sends many frames at once: its batched writes on the
// NIC are exercised on every board).
const imapScript = `
import imaplib, ssl, sys, time
host, port, append, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
body = "".join("line %05d of a long message, so that the body spans many frames\r\n" % i for i in range(4000))
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=60)
m.login("alice", "correct horse")
if append:
    msg = "From: bob@example.org\r\nTo: alice@localhost\r\nSubject: %s\r\n\r\nhello\r\n" % subject + body
    typ, data = m.append("INBOX", None, imaplib.Time2Internaldate(time.time()), msg.encode())
    assert typ == "OK", (typ, data)
typ, data = m.select("INBOX")
assert typ == "OK" and data[0] == b"1", ("select", typ, data)
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert typ == "OK" and subject.encode() in data[0][1], ("fetch", typ, data)
typ, data = m.fetch("1", "(BODY.PEEK[TEXT])")
assert typ == "OK" and data[0][1] == ("hello\r\n" + body).encode(), ("fetch body", typ, len(data[0][1]))
m.logout()
print("ok")
`

// imapSession runs imapScript against addr.
func imapSession(addr string, appendMsg bool, subject string) (string, error) {
	host, port, _ := strings.Cut(addr, ":")
	a := "0"
	if appendMsg {
		a = "1"
	}
	out, err := exec.Command("python3", "-c", imapScript, host, port, a, subject).CombinedOutput()
	return string(out), err
}
