package appliance

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/appliance/app"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		check   func(t *testing.T, c bootConfig)
		wantErr string
	}{
		{"defaults", "console=ttyS0 panic=-1 quiet", func(t *testing.T, c bootConfig) {
			if c.net != "netstack" || c.nic != "eth0" || c.data != "/dev/vda" || c.ip.IsValid() || c.ephemeral || c.poweroffOnCrash || c.sdSlot != "" || c.testBootBound != DefaultTestBootBound || c.trial {
				t.Errorf("got %+v, want the defaults", c)
			}
		}, ""},
		{"static", "nymote.ip=10.0.2.15/24 nymote.gw=10.0.2.2 nymote.dns=10.0.2.3,1.1.1.1 nymote.net=kernel", func(t *testing.T, c bootConfig) {
			if c.ip != netip.MustParsePrefix("10.0.2.15/24") || c.gw != netip.MustParseAddr("10.0.2.2") || c.net != "kernel" {
				t.Errorf("got ip %v gw %v net %s", c.ip, c.gw, c.net)
			}
			if len(c.dns) != 2 || c.dns[1] != netip.MustParseAddr("1.1.1.1") {
				t.Errorf("got dns %v", c.dns)
			}
		}, ""},
		{"service options", "nymote.domain=example.org nymote.oncrash=poweroff nymote.ephemeral=1 nymote.modules=a,b nymote.seed=/dev/mmcblk0p1", func(t *testing.T, c bootConfig) {
			if !reflect.DeepEqual(c.service, map[string]string{"domain": "example.org"}) {
				t.Errorf("got service options %v", c.service)
			}
			if !c.poweroffOnCrash || !c.ephemeral || !reflect.DeepEqual(c.modules, []string{"a", "b"}) || c.seed != "/dev/mmcblk0p1" {
				t.Errorf("got %+v", c)
			}
		}, ""},
		{"sd slots", "nymote.seed=/dev/mmcblk0p1 nymote.sdslot=b nymote.testboot=2m", func(t *testing.T, c bootConfig) {
			if c.sdSlot != "b" || c.testBootBound != 2*time.Minute || len(c.service) != 0 {
				t.Errorf("got slot %q, test boot bound %s, service %v", c.sdSlot, c.testBootBound, c.service)
			}
		}, ""},
		{"test boot of a host-booted image", "nymote.trial=1", func(t *testing.T, c bootConfig) {
			if !c.trial || len(c.service) != 0 {
				t.Errorf("got trial %v, service %v", c.trial, c.service)
			}
		}, ""},
		{"bad trial", "nymote.trial=yes", nil, "want 1 or 0"},
		{"bad sd slot", "nymote.sdslot=c", nil, "want a or b"},
		{"bad test boot bound", "nymote.testboot=-1s", nil, "positive duration"},
		{"bad ip", "nymote.ip=10.0.2.15", nil, "nymote.ip"},
		{"ipv6", "nymote.ip=fe80::1/64", nil, "IPv4"},
		{"bad dns", "nymote.dns=10.0.2.3,x", nil, "nymote.dns"},
		{"bad net", "nymote.net=wifi", nil, "netstack or kernel"},
		{"bad oncrash", "nymote.oncrash=explode", nil, "reboot or poweroff"},
		{"poweroff by reset", "nymote.poweroff=reset", func(t *testing.T, c bootConfig) {
			if !c.poweroffByReset {
				t.Errorf("got %+v", c)
			}
		}, ""},
		{"bad poweroff", "nymote.poweroff=later", nil, "nymote.poweroff=later: want off or reset"},
		{"updates", "nymote.updatedisk=auto nymote.settle=2s", func(t *testing.T, c bootConfig) {
			if c.updateDisk != "auto" || c.settle != 2*time.Second || len(c.service) != 0 {
				t.Errorf("got update disk %q, settle %v, service %v", c.updateDisk, c.settle, c.service)
			}
		}, ""},
		{"default settle", "", func(t *testing.T, c bootConfig) {
			if c.settle != app.DefaultSettle || c.updateDisk != "" {
				t.Errorf("got settle %v, update disk %q", c.settle, c.updateDisk)
			}
		}, ""},
		{"bad settle", "nymote.settle=soon", nil, "nymote.settle=soon"},
		{"zero settle", "nymote.settle=0s", nil, "positive duration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseCmdline(tc.cmdline)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestDedupWriter(t *testing.T) {
	var out bytes.Buffer
	w := newDedupWriter(&out, []string{"nymote: mail imap listening on 10.0.2.15:143"})
	fmt.Fprintf(w, "nymote: mail tls certificate sha256 AB\n")
	fmt.Fprintf(w, "nymote: mail imap listening on 10.0.2.15:143\n")
	w.Write([]byte("partial "))
	w.Write([]byte("line\r\nnymote: mail imap listening on 10.0.2.15:143\r\n"))
	if got, want := out.String(), "nymote: mail tls certificate sha256 AB\npartial line\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
