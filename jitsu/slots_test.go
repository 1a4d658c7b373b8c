package jitsu

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/boards"
	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/internal/slottest"
	"github.com/nymote/nymote/update"
)

// TestQEMUSlots (four TCG boots of hello on microvm-x86_64, about 1.5
// minutes; skipped with -short) starts an appliance with launcher slots: its image goes
// into slot a and boots; a newer signed image installed on the host
// test-boots within Start, is committed and serves; an image whose service
// exits at start test-boots, fails, and Start boots the committed image
// again, which serves.
func TestQEMUSlots(t *testing.T) {
	if testing.Short() {
		t.Skip("four QEMU boots: skipped with -short")
	}
	signer := slottest.Signer(t)
	src, _ := filepath.Abs("..")
	build := func(name string, cmdline ...string) string {
		dir := filepath.Join(t.TempDir(), name)
		_, err := images.Build(context.Background(), images.Options{App: "hello", Board: "microvm-x86_64", OutDir: dir, SourceDir: src,
			Outputs: []boards.Output{boards.OutputQEMU}, Cmdline: cmdline, Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
	v1 := build("v1", "nymote.release=v1")
	v2 := build("v2", "nymote.release=v2")
	broken := build("v3", "nymote.release=v3", "nymote.crash=now")
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := datadisk.Create(context.Background(), t.TempDir(), disk, 32<<20); err != nil {
		t.Skipf("no data disk (mkfs.ext4 from e2fsprogs?): %v", err)
	}
	l := &QEMULauncher{Image: v1, Disk: disk, Ports: []string{"hello"}, KVM: testKVM(), Slots: true,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	boot := func(want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		inst, err := l.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := inst.Stop(sctx); err != nil {
				t.Errorf("stop: %v", err)
			}
		}()
		c, _, g := greet(t, inst.Addr("hello"))
		c.Close()
		if !strings.HasPrefix(g, "hello from nymote "+want) {
			t.Errorf("greeting %q, want %s", g, want)
		}
		if inst.Addr("update") == "" {
			t.Error("no update port forwarded")
		}
	}
	boot("v1")
	s, _ := update.OpenSlots(update.SlotsDir(disk))
	if _, err := s.Install(v2, update.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	boot("v2")
	if st, _ := s.State(); st.Committed != update.SlotB || st.Next != "" {
		t.Errorf("after v2's test boot: %+v, want b committed", st)
	}
	if _, err := s.Install(broken, update.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	boot("v2")
	if st, _ := s.State(); st.Committed != update.SlotB || st.RolledBack == nil || st.RolledBack.Slot != update.SlotA {
		t.Errorf("after the broken image's test boot: %+v, want b committed and a rolled back", st)
	}
}
