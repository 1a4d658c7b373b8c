package app

import (
	"net"
	"path"
	"strings"
	"testing"
)

// TestApps checks the table's invariants: names unique and matching their
// key and main package, ports named, numbered and unique within each app,
// a protocol for every port, host defaults on loopback.
func TestApps(t *testing.T) {
	if len(Apps) == 0 {
		t.Fatal("no apps")
	}
	for key, a := range Apps {
		if a.Name != key {
			t.Errorf("Apps[%q].Name = %q", key, a.Name)
		}
		if !strings.HasPrefix(a.Package, "github.com/nymote/nymote/") || path.Base(a.Package) != a.Name {
			t.Errorf("%s: main package %q, want github.com/nymote/nymote/.../%s", a.Name, a.Package, a.Name)
		}
		if len(a.Ports) == 0 {
			t.Errorf("%s: no ports", a.Name)
		}
		names, numbers := map[string]bool{}, map[int]bool{}
		for _, p := range a.Ports {
			if p.Name == "" || names[p.Name] {
				t.Errorf("%s: port name %q empty or used twice", a.Name, p.Name)
			}
			if p.Port <= 0 || p.Port > 65535 || numbers[p.Port] {
				t.Errorf("%s %s: port %d out of range or used twice", a.Name, p.Name, p.Port)
			}
			names[p.Name], numbers[p.Port] = true, true
			if p.Proto == "" {
				t.Errorf("%s %s: no protocol", a.Name, p.Name)
			}
			if p.HostDefault != "" {
				h, _, err := net.SplitHostPort(p.HostDefault)
				if ip := net.ParseIP(h); err != nil || ip == nil || !ip.IsLoopback() {
					t.Errorf("%s %s: host default %q is not a loopback address", a.Name, p.Name, p.HostDefault)
				}
				if p.TLS {
					t.Errorf("%s %s: a host default serves plain text, but the port is TLS", a.Name, p.Name)
				}
			}
		}
	}
	if _, err := Lookup("nope"); err == nil || !strings.Contains(err.Error(), "known apps: calendar, contacts, hello, mail") {
		t.Errorf("Lookup(nope): %v", err)
	}
}

func TestHostPort(t *testing.T) {
	for _, tc := range []struct{ port, offset, want int }{{143, 1000, 1143}, {25, 1000, 1025}, {8080, 1000, 8080}, {143, 0, 143}, {1023, 1000, 2023}, {1024, 1000, 1024}} {
		if got := HostPort(tc.port, tc.offset); got != tc.want {
			t.Errorf("HostPort(%d, %d) = %d, want %d", tc.port, tc.offset, got, tc.want)
		}
	}
}

// TestDataFormat checks every app's data format declaration, and the
// declaration's rules on examples.
func TestDataFormat(t *testing.T) {
	for _, a := range Apps {
		if err := a.Data.Check(); err != nil {
			t.Errorf("%s: %v", a.Name, err)
		}
	}
	f := DataFormat{Version: 3, Reads: []int{2}, Migrations: []Migration{{From: 1, Name: "a"}, {From: 2, Name: "b"}}}
	if err := f.Check(); err != nil {
		t.Fatal(err)
	}
	if !f.CanRead(3) || !f.CanRead(2) || f.CanRead(1) {
		t.Error("CanRead")
	}
	if p, err := f.Path(1); err != nil || len(p) != 2 || p[0].Name != "a" || p[1].Name != "b" {
		t.Errorf("Path(1) = %v, %v", p, err)
	}
	if p, err := f.Path(3); err != nil || len(p) != 0 {
		t.Errorf("Path(3) = %v, %v", p, err)
	}
	if _, err := f.Path(4); err == nil {
		t.Error("Path(4): no error for a newer format")
	}
	if _, err := (DataFormat{Version: 3, Migrations: []Migration{{From: 2, Name: "b"}}}).Path(1); err == nil || !strings.Contains(err.Error(), "from data format 1 to 2") {
		t.Errorf("Path over a missing step: %v", err)
	}
	if (DataFormat{}).Current() != 1 {
		t.Error("the zero format is not 1")
	}
	for _, bad := range []DataFormat{
		{Version: 2, Reads: []int{2}},
		{Version: 2, Reads: []int{0}},
		{Version: 2, Migrations: []Migration{{From: 2, Name: "x"}}},
		{Version: 3, Migrations: []Migration{{From: 1, Name: "x"}, {From: 2, Name: "x"}}},
		{Version: 3, Migrations: []Migration{{From: 1, Name: "x"}, {From: 1, Name: "y"}}},
		{Version: 2, Migrations: []Migration{{From: 1}}},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
