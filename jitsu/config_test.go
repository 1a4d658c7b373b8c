package jitsu

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const goodConfig = `dns: 127.0.0.1:5353
control: 127.0.0.1:5380
zones:
  - name: Home.Example
appliances:
  - name: mail.home.example
    address: 127.0.0.1
    ports: [{name: imap, port: 1143}, {name: smtp, port: 1025}]
    data: /srv/mail
    launcher:
      kind: process
      command: [nymote-mail, --data, "${data}", --port, "imap=${port:imap}"]
`

func TestConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	z := c.Zones[0]
	if z.Name != "home.example." || z.NS[0] != "ns.home.example." || z.Hostmaster != "hostmaster.home.example." || time.Duration(z.TTL) != time.Hour {
		t.Errorf("zone defaults: %+v", z)
	}
	a := c.Appliances[0]
	if a.Name != "mail.home.example." || time.Duration(a.TTL) != DefaultTTL || a.Idle != IdleStop || time.Duration(a.BootTimeout) != DefaultBootTimeout ||
		time.Duration(a.Spare) != DefaultSpareAge {
		t.Errorf("appliance defaults: %+v", a)
	}
	l := &ProcessLauncher{Command: a.Launcher.Command, Data: a.Data}
	if got, want := strings.Join(l.Args(), " "), "nymote-mail --data /srv/mail --port imap=0"; got != want {
		t.Errorf("process command: got %q, want %q", got, want)
	}
}

// TestConfigSlots: the firecracker and xl launchers keep slots beside
// the data disk, from the image folder, their configuration optional.
func TestConfigSlots(t *testing.T) {
	for _, kind := range []string{"firecracker", "xl"} {
		y := strings.Replace(goodConfig, "    data: /srv/mail\n    launcher:\n      kind: process\n      command: [nymote-mail, --data, \"${data}\", --port, \"imap=${port:imap}\"]",
			"    data: /srv/mail.img\n    launcher:\n      kind: "+kind+"\n      image: /srv/img\n      guest: 10.0.0.2\n      slots: true", 1)
		c, err := ParseConfig([]byte(y))
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		l, err := NewLauncher(c.Appliances[0], discardLog())
		if err != nil {
			t.Fatal(err)
		}
		switch l := l.(type) {
		case *FirecrackerLauncher:
			if !l.Slots || l.Image != "/srv/img" || l.Disk != "/srv/mail.img" || l.Config != "" {
				t.Errorf("firecracker launcher: %+v", l)
			}
		case *XLLauncher:
			if !l.Slots || l.Image != "/srv/img" || l.Disk != "/srv/mail.img" || l.Config != "" {
				t.Errorf("xl launcher: %+v", l)
			}
		default:
			t.Errorf("%s: launcher %T", kind, l)
		}
	}
}

// TestConfigErrors: each broken configuration is refused with an error
// that names the field and its line.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown top key", "dns:", "dnss:", "line 1: field dnss not found"},
		{"unknown nested key", "    data: /srv/mail", "    data: /srv/mail\n    colour: blue", "line 10: field colour not found"},
		{"bad ttl", "    data: /srv/mail", "    ttl: soon\n    data: /srv/mail", `line 9: "soon" is not a duration`},
		{"negative ttl", "    data: /srv/mail", "    ttl: -5s\n    data: /srv/mail", "line 9: \"-5s\": a duration must not be negative"},
		{"bad idle", "    data: /srv/mail", "    idle: hibernate\n    data: /srv/mail", `line 9: idle "hibernate": want stop, suspend or never`},
		{"spare too young", "    data: /srv/mail", "    spare: 10ms\n    data: /srv/mail", "line 9: appliances[0].spare: 10ms: want at least 100ms, or off"},
		{"bad spare", "    data: /srv/mail", "    spare: never\n    data: /srv/mail", `line 9: "never" is not a duration such as 30s, or off`},
		{"no dns", "dns: 127.0.0.1:5353\n", "", "dns: required"},
		{"bad dns", "127.0.0.1:5353", "localhost", `line 1: dns: "localhost": want HOST:PORT`},
		{"control not loopback", "127.0.0.1:5380", "0.0.0.0:5380", "line 2: control:"},
		{"no zones", "zones:\n  - name: Home.Example\n", "zones: []\n", "line 3: zones: at least one zone"},
		{"name outside zone", "name: mail.home.example", "name: mail.elsewhere.example", "line 6: appliances[0].name: mail.elsewhere.example. is in none of the zones"},
		{"bad address", "address: 127.0.0.1", "address: localhost", `line 7: appliances[0].address: "localhost" is not an IP address`},
		{"bad port", "port: 1025", "port: 70000", "line 8: appliances[0].ports[1].port: 70000: want 1 to 65535"},
		{"port twice", "port: 1025", "port: 1143", "appliances[0].ports[1].port: 127.0.0.1:1143 is already used"},
		{"port not a number", "port: 1025", "port: smtp", "line 8: cannot unmarshal !!str `smtp` into int"},
		{"bad kind", "kind: process", "kind: docker", `line 11: appliances[0].launcher.kind: "docker": want process, qemu, xl or firecracker`},
		{"no command", "      command: [nymote-mail, --data, \"${data}\", --port, \"imap=${port:imap}\"]\n", "", "appliances[0].launcher.command: required"},
		{"qemu without image", "kind: process", "kind: qemu", "appliances[0].launcher.image: required"},
		{"slots on xl without image", "kind: process\n      command: [nymote-mail, --data, \"${data}\", --port, \"imap=${port:imap}\"]", "kind: xl\n      config: mail.cfg\n      guest: 10.0.0.2\n      slots: true", "appliances[0].launcher.image: required for the qemu launcher and with slots"},
		{"slots on firecracker without data", "    data: /srv/mail\n    launcher:\n      kind: process\n      command: [nymote-mail, --data, \"${data}\", --port, \"imap=${port:imap}\"]",
			"    launcher:\n      kind: firecracker\n      image: /srv/img\n      guest: 10.0.0.2\n      slots: true", "appliances[0].launcher.slots: slots are kept beside the data disk"},
		{"slots on process", "      command:", "      slots: true\n      command:", "appliances[0].launcher.slots: slots are kept beside the data disk: the qemu, firecracker or xl launcher"},
		{"xl without guest", "kind: process\n      command: [nymote-mail, --data, \"${data}\", --port, \"imap=${port:imap}\"]", "kind: xl\n      config: mail.cfg", "appliances[0].launcher.guest"},
		{"tabs", "dns:", "\tdns:", "found character that cannot start any token"},
		{"bad forward client", "control: 127.0.0.1:5380\n", "control: 127.0.0.1:5380\nforward: 127.0.0.1:53\nforward_clients:\n  - 10.0.0.0/8\n  - 10.0.0.0/33\n",
			`line 6: forward_clients[1]: "10.0.0.0/33": want a network such as 192.168.1.0/24 or an IP address`},
		{"forward clients without forward", "control: 127.0.0.1:5380\n", "control: 127.0.0.1:5380\nforward_clients: [10.0.0.0/8]\n",
			"line 3: forward_clients: given without forward"},
		{"proxy_protocol not a boolean", "    data: /srv/mail", "    proxy_protocol: maybe\n    data: /srv/mail", "line 9: cannot unmarshal !!str `maybe` into bool"},
		{"spare outlives the PROXY header wait", "    data: /srv/mail", "    spare: 30s\n    proxy_protocol: true\n    data: /srv/mail",
			"line 9: appliances[0].spare: 30s: with proxy_protocol a spare must be replaced before the appliance's 20s wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(goodConfig, tc.old, tc.new, 1)
			if y == goodConfig {
				t.Fatalf("the test's old text %q is not in the configuration", tc.old)
			}
			_, err := ParseConfig([]byte(y))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one saying %q", err, tc.want)
			}
		})
	}
	if _, err := ParseConfig(nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty configuration: %v", err)
	}
}

// TestConfigProxyAndForward: proxy_protocol is on by default for the
// qemu launcher only (it sets the appliance's side itself); forwarding
// serves loopback unless forward_clients says otherwise.
func TestConfigProxyAndForward(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		proxy          bool
		clients        string
	}{
		{"process", "", "", false, "[127.0.0.0/8 ::1/128]"},
		{"qemu", "kind: process\n      command: [nymote-mail, --data, \"${data}\", --port, \"imap=${port:imap}\"]", "kind: qemu\n      image: img", true, "[127.0.0.0/8 ::1/128]"},
		{"qemu, off", "kind: process\n      command: [nymote-mail, --data, \"${data}\", --port, \"imap=${port:imap}\"]", "kind: qemu\n      image: img\n    proxy_protocol: false", false, "[127.0.0.0/8 ::1/128]"},
		{"process, on", "    data: /srv/mail", "    proxy_protocol: true\n    data: /srv/mail", true, "[127.0.0.0/8 ::1/128]"},
		{"forward clients", "control: 127.0.0.1:5380\n", "control: 127.0.0.1:5380\nforward: 127.0.0.1:53\nforward_clients: [192.168.1.7/24, 10.1.2.3, \"::ffff:10.0.0.0/104\"]\n", false, "[192.168.1.0/24 10.1.2.3/32 10.0.0.0/8]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(strings.Replace(goodConfig, tc.old, tc.new, 1)))
			if err != nil {
				t.Fatal(err)
			}
			if got := *c.Appliances[0].ProxyProtocol; got != tc.proxy {
				t.Errorf("proxy_protocol: got %v, want %v", got, tc.proxy)
			}
			if got := fmt.Sprint(c.forwardClients); got != tc.clients {
				t.Errorf("forward clients: got %s, want %s", got, tc.clients)
			}
		})
	}
}

func TestConfigSpare(t *testing.T) {
	for _, tc := range []struct {
		spare string
		want  SpareAge
	}{
		{"off", SpareOff},
		{"false", SpareOff},
		{"5s", SpareAge(5 * time.Second)},
		{"0s", SpareAge(DefaultSpareAge)},
	} {
		c, err := ParseConfig([]byte(strings.Replace(goodConfig, "    data: /srv/mail", "    spare: "+tc.spare+"\n    data: /srv/mail", 1)))
		if err != nil {
			t.Fatalf("spare: %s: %v", tc.spare, err)
		}
		if got := c.Appliances[0].Spare; got != tc.want {
			t.Errorf("spare: %s: got %v, want %v", tc.spare, time.Duration(got), time.Duration(tc.want))
		}
	}
}

// TestExampleConfig keeps the example configuration valid.
func TestExampleConfig(t *testing.T) {
	c, err := LoadConfig("testdata/jitsu.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Appliances) != 2 || c.Appliances[1].Idle != IdleSuspend || c.Appliances[1].Launcher.Kind != "qemu" {
		t.Errorf("example: %+v", c.Appliances)
	}
	for _, a := range c.Appliances {
		if _, err := NewLauncher(a, testLog(t)); err != nil {
			t.Errorf("%s: %v", a.Name, err)
		}
	}
}
