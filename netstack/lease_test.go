//go:build linux

package netstack

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestLeaseFrom(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ack := func(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New(append([]dhcpv4.Modifier{
			dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
			dhcpv4.WithYourIP(net.IPv4(192, 0, 2, 10)),
		}, mods...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	dur := func(code dhcpv4.OptionCode, d time.Duration) dhcpv4.Modifier {
		return dhcpv4.WithOption(dhcpv4.OptGeneric(code, dhcpv4.Duration(d).ToBytes()))
	}
	tests := []struct {
		name                  string
		ack                   *dhcpv4.DHCPv4
		addr                  netip.Prefix
		router                netip.Addr
		renew, rebind, expiry time.Duration
	}{
		{
			name:   "defaults",
			ack:    ack(),
			addr:   netip.MustParsePrefix("192.0.2.10/24"),
			renew:  30 * time.Minute,
			rebind: 52*time.Minute + 30*time.Second,
			expiry: time.Hour,
		},
		{
			name: "lease time only",
			ack: ack(dhcpv4.WithNetmask(net.CIDRMask(26, 32)), dhcpv4.WithLeaseTime(600),
				dhcpv4.WithOption(dhcpv4.OptRouter(net.IPv4(192, 0, 2, 1)))),
			addr:   netip.MustParsePrefix("192.0.2.10/26"),
			router: netip.MustParseAddr("192.0.2.1"),
			renew:  300 * time.Second, rebind: 525 * time.Second, expiry: 600 * time.Second,
		},
		{
			name:  "server timers",
			ack:   ack(dhcpv4.WithLeaseTime(120), dur(dhcpv4.OptionRenewTimeValue, 2*time.Second), dur(dhcpv4.OptionRebindingTimeValue, 4*time.Second)),
			addr:  netip.MustParsePrefix("192.0.2.10/24"),
			renew: 2 * time.Second, rebind: 4 * time.Second, expiry: 120 * time.Second,
		},
		{
			name:  "T2 beyond lease",
			ack:   ack(dhcpv4.WithLeaseTime(80), dur(dhcpv4.OptionRenewTimeValue, 10*time.Second), dur(dhcpv4.OptionRebindingTimeValue, 100*time.Second)),
			addr:  netip.MustParsePrefix("192.0.2.10/24"),
			renew: 10 * time.Second, rebind: 70 * time.Second, expiry: 80 * time.Second,
		},
		{
			name:  "T1 beyond T2",
			ack:   ack(dhcpv4.WithLeaseTime(80), dur(dhcpv4.OptionRenewTimeValue, 75*time.Second), dur(dhcpv4.OptionRebindingTimeValue, 70*time.Second)),
			addr:  netip.MustParsePrefix("192.0.2.10/24"),
			renew: 40 * time.Second, rebind: 70 * time.Second, expiry: 80 * time.Second,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := leaseFrom(tc.ack, t0)
			if l.Addr != tc.addr || l.Router != tc.router {
				t.Errorf("addr %v router %v, want %v %v", l.Addr, l.Router, tc.addr, tc.router)
			}
			if got := l.Renew.Sub(t0); got != tc.renew {
				t.Errorf("renew after %v, want %v", got, tc.renew)
			}
			if got := l.Rebind.Sub(t0); got != tc.rebind {
				t.Errorf("rebind after %v, want %v", got, tc.rebind)
			}
			if got := l.Expiry.Sub(t0); got != tc.expiry {
				t.Errorf("expiry after %v, want %v", got, tc.expiry)
			}
		})
	}
}

func TestTAPMAC(t *testing.T) {
	a, b := tapMAC("nymote0"), tapMAC("nymote1")
	if a.String() == b.String() {
		t.Errorf("tapMAC gives %v for two names", a)
	}
	if a.String() != tapMAC("nymote0").String() {
		t.Errorf("tapMAC is not stable")
	}
	if a[0]&1 != 0 || a[0]&2 == 0 {
		t.Errorf("tapMAC %v is not a locally administered unicast address", a)
	}
}
