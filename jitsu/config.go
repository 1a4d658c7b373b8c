package jitsu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"gopkg.in/yaml.v3"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/launch"
)

// Config is the configuration of a jitsu server, as read from jitsu.yaml
// (a fuller example: testdata/jitsu.yaml). Unknown keys and bad values are
// errors that name the field and its line.
//
//	dns: 127.0.0.1:5353          # UDP and TCP
//	control: 127.0.0.1:5380      # status over HTTP on loopback
//	forward: ""                  # resolver for other names; "" refuses them
//	forward_clients: [127.0.0.0/8, ::1/128] # who may use forward (the default)
//	zones:
//	  - name: home.example
//	    ns: [ns1.home.example]   # default: ns.ZONE
//	    hostmaster: hostmaster.home.example
//	    mail: {appliance: mail.home.example} # its mail records (MailZone)
//	signpost: {data: /srv/hub}   # NODE.PERSON.nymote (SignpostConfig)
//	appliances:
//	  - name: mail.home.example
//	    address: 127.0.0.1       # answered in A/AAAA; jitsu holds its ports
//	    ports: [{name: imap, port: 1143}]
//	    ttl: 30s
//	    idle: stop               # stop, suspend or never
//	    boot_timeout: 60s
//	    data: /srv/mail
//	    spare: 10s               # a ready connection per port; or off
//	    proxy_protocol: false    # PROXY header with the client's address
//	    launcher:
//	      kind: process
//	      command: [nymote-mail, --data, "${data}", --port, "imap=0"]
type Config struct {
	// DNS is the address the DNS server listens on (UDP and TCP).
	DNS string `yaml:"dns"`
	// Control is the loopback address of the status endpoint (HTTP);
	// "" means none.
	Control string `yaml:"control"`
	// Forward is a resolver (host:port) that queries for names outside
	// the zones are forwarded to; "" answers them REFUSED.
	Forward string `yaml:"forward"`
	// ForwardClients are the networks (CIDR, such as 192.168.1.0/24, or
	// single addresses) whose queries for other names are forwarded;
	// queries from elsewhere are REFUSED, so that jitsu is not an open
	// resolver. Empty means loopback only (127.0.0.0/8 and ::1).
	ForwardClients []string `yaml:"forward_clients"`
	// Zones are the zones served authoritatively.
	Zones []Zone `yaml:"zones"`
	// Appliances are the names that summon appliances.
	Appliances []ApplianceConfig `yaml:"appliances"`
	// Signpost, if set, makes jitsu answer for a person's network of
	// nodes (package signpost) from a node's data directory on this host.
	Signpost *SignpostConfig `yaml:"signpost"`

	// forwardClients are ForwardClients parsed (by ParseConfig).
	forwardClients []netip.Prefix
}

// defaultForwardClients are the networks forwarding serves when
// forward_clients is not given: the host itself.
var defaultForwardClients = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// Zone is one authoritative zone.
type Zone struct {
	// Name is the zone's apex, such as home.example.
	Name string `yaml:"name"`
	// NS are the zone's name servers; empty means ns.ZONE.
	NS []string `yaml:"ns"`
	// Hostmaster is the SOA's mailbox; empty means hostmaster.ZONE.
	Hostmaster string `yaml:"hostmaster"`
	// TTL of the SOA and NS records; zero means 1h.
	TTL Duration `yaml:"ttl"`
	// Mail, if set, makes jitsu serve the zone's mail records (those of
	// nymote mail dns) from the mail appliance's data.
	Mail *MailZone `yaml:"mail"`
}

// MailZone says where a zone's mail records come from: jitsu serves what
// `nymote mail dns` prints (MX, A/AAAA, SPF, the DKIM keys published now,
// DMARC, MTA-STS, TLS-RPT, the CNAMEs, SRV and CAA; built by the same code,
// msgauth.Records), reading the DKIM keys from the appliance's data
// directory again whenever they change (nymote mail dkim-rotate) and at
// least every minute (keys leave the records at the end of a rotation's
// overlap), so that nobody edits a zone by hand.
type MailZone struct {
	// Domain is the mail domain; empty means the zone's apex. It must be
	// in the zone.
	Domain string `yaml:"domain"`
	// Appliance is the name of the mail appliance (one of appliances):
	// the default of Hostname (its name), IPs (its address) and Data
	// (its data directory).
	Appliance string `yaml:"appliance"`
	// Hostname is the mail server's name (MX and SRV target).
	Hostname string `yaml:"hostname"`
	// IPs are the server's addresses (A/AAAA of Hostname when it is not
	// an appliance's name, which jitsu answers itself; SPF terms).
	IPs []string `yaml:"ips"`
	// Data is the mail appliance's data directory (its DKIM keys are
	// node files there, node/dkim/DOMAIN).
	Data string `yaml:"data"`
	// DMARCPolicy is reject (the default), quarantine or none.
	DMARCPolicy string `yaml:"dmarc_policy"`
	// MTASTSMode is enforce (the default), testing or none.
	MTASTSMode string `yaml:"mta_sts_mode"`
	// CAA are the CAs that may issue the domain's certificates; not
	// given means [letsencrypt.org], as nymote mail dns; [] means no CAA
	// record.
	CAA []string `yaml:"caa"`
	// TTL of the records; zero means 1h.
	TTL Duration `yaml:"ttl"`

	ips []net.IP
}

// SignpostConfig makes jitsu answer for a person's network of nodes:
// NODE.PERSON.nymote and SERVICE.NODE.PERSON.nymote are the node's tunnel
// addresses (A and AAAA), as each node's own name server answers them,
// from the signpost state of a node on this host (a hub's data directory,
// or a laptop's that joined with nymote peer join --wg-quick). The state
// is read again when it changes (a join, nymote peer del).
type SignpostConfig struct {
	// Data is the node's data directory (its keys and state are in
	// DATA/node/signpost).
	Data string `yaml:"data"`
	// Clients are the networks (CIDR or single addresses) that may ask
	// for the network's names, besides the network's own tunnel
	// prefixes: the names of a person's devices are not for everyone.
	// Not given means loopback (127.0.0.0/8, ::1).
	Clients []string `yaml:"clients"`

	clients []netip.Prefix
}

// ApplianceConfig is one summonable appliance.
type ApplianceConfig struct {
	// Name is the DNS name that summons it; it must be in a zone.
	Name string `yaml:"name"`
	// Address is the IP address answered for Name (A or AAAA). jitsu
	// listens on its ports at this address and proxies to the appliance.
	Address string `yaml:"address"`
	// Ports are the service's TCP ports at Address.
	Ports []PortConfig `yaml:"ports"`
	// TTL of the A/AAAA answer; zero means 30s. The appliance is idle
	// after 2×TTL without queries and without open connections.
	TTL Duration `yaml:"ttl"`
	// Idle is what happens when it is idle: stop (the default), suspend
	// (where the launcher can) or never.
	Idle IdlePolicy `yaml:"idle"`
	// BootTimeout bounds a boot: a query waits at most this long for the
	// service port to accept, then gets SERVFAIL. Zero means 60s.
	BootTimeout Duration `yaml:"boot_timeout"`
	// Data is the appliance's data directory (process launcher) or data
	// disk image (VM launchers).
	Data string `yaml:"data"`
	// Spare is how long a spare connection to each port of the running
	// appliance (see the package documentation) is kept before it is
	// replaced by a fresh one; "off" keeps none. Zero means
	// DefaultSpareAge (10s). It must be shorter than the time the
	// service gives a new connection to send its first command.
	Spare SpareAge `yaml:"spare"`
	// ProxyProtocol makes jitsu start each connection it proxies to the
	// appliance with a PROXY protocol (version 2) header carrying the
	// client's address, so that the appliance sees the client and not
	// jitsu (see "Client addresses" in the package documentation). The
	// appliance must expect it (nymote.proxy=NETWORKS on its kernel
	// command line, --proxy on a host process) and then refuses
	// connections from jitsu without one. Unset means on for the qemu
	// launcher, which sets nymote.proxy itself, and off for the others.
	ProxyProtocol *bool `yaml:"proxy_protocol"`
	// Launcher says how the appliance is started.
	Launcher LauncherConfig `yaml:"launcher"`
}

// PortConfig is one service port.
type PortConfig struct {
	// Name is the service's name for the port (imap, smtp, hello...).
	Name string `yaml:"name"`
	// Port is the TCP port at the appliance's address.
	Port int `yaml:"port"`
}

// LauncherConfig configures a launcher.
type LauncherConfig struct {
	// Kind is process, qemu, xl or firecracker.
	Kind string `yaml:"kind"`
	// Command is the program and its arguments (process). ${data} is
	// replaced by the data directory; ${port:NAME} by the port the
	// appliance should listen on for NAME (0: any free port; the
	// appliance prints "NAME listening on ADDR" for each).
	Command []string `yaml:"command"`
	// Env are extra KEY=VALUE environment variables (process).
	Env []string `yaml:"env"`
	// Image is the image folder built by nymote build (qemu; xl and
	// firecracker with slots).
	Image string `yaml:"image"`
	// KVM is auto, on or off (qemu).
	KVM string `yaml:"kvm"`
	// MemoryMiB is the guest's memory; zero means 256 (VM launchers).
	MemoryMiB int `yaml:"memory"`
	// Config is the xl or Firecracker configuration file.
	Config string `yaml:"config"`
	// Guest is the appliance's own address for xl and Firecracker (it is
	// on a bridge or TAP device, not behind port forwards).
	Guest string `yaml:"guest"`
	// Slots keeps two image slots beside the data disk (qemu,
	// firecracker, xl; see package update): Image goes into them (a new
	// one boots once for a test and is kept only if the appliance
	// reports good), the appliance takes updates (nymote update) on its
	// update port, and each boot follows the try-once rule. With
	// firecracker and xl, Config is optional: each boot's configuration
	// is Config (or, without one, the slot image's own) with the kernel,
	// initramfs and command line of the slot booted, the data disk and
	// the update disk (launch.FirecrackerSlotConfig,
	// launch.XLSlotConfig).
	Slots bool `yaml:"slots"`
}

// Duration is a time.Duration written as "30s" (or a number of seconds).
type Duration time.Duration

// UnmarshalYAML parses a duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 30s", n.Line)
	}
	if secs, err := strconv.Atoi(n.Value); err == nil {
		*d = Duration(time.Duration(secs) * time.Second)
	} else {
		v, err := time.ParseDuration(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: %q is not a duration such as 30s", n.Line, n.Value)
		}
		*d = Duration(v)
	}
	if *d < 0 {
		return fmt.Errorf("line %d: %q: a duration must not be negative", n.Line, n.Value)
	}
	return nil
}

// SpareAge is the age at which a spare connection is replaced, or
// SpareOff: written as a duration such as 10s, or off.
type SpareAge Duration

// SpareOff turns spare connections off.
const SpareOff SpareAge = -1

// UnmarshalYAML parses a duration or off.
func (a *SpareAge) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && (n.Value == "off" || n.Value == "false") {
		*a = SpareOff
		return nil
	}
	var d Duration
	if err := d.UnmarshalYAML(n); err != nil {
		return fmt.Errorf("%w, or off", err)
	}
	*a = SpareAge(d)
	return nil
}

// IdlePolicy says what happens to an idle appliance.
type IdlePolicy string

// Idle policies.
const (
	IdleStop    IdlePolicy = "stop"
	IdleSuspend IdlePolicy = "suspend"
	IdleNever   IdlePolicy = "never"
)

// UnmarshalYAML checks the policy.
func (p *IdlePolicy) UnmarshalYAML(n *yaml.Node) error {
	switch v := IdlePolicy(n.Value); v {
	case IdleStop, IdleSuspend, IdleNever:
		*p = v
		return nil
	}
	return fmt.Errorf("line %d: idle %q: want stop, suspend or never", n.Line, n.Value)
}

// Defaults.
const (
	DefaultTTL         = 30 * time.Second
	DefaultBootTimeout = 60 * time.Second
	defaultZoneTTL     = time.Hour
)

// LoadConfig reads and checks the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jitsu: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("jitsu: %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes a configuration strictly (unknown keys are errors)
// and checks it, filling in defaults.
func ParseConfig(b []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the configuration is empty")
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// One line per problem, without yaml's preamble.
			return nil, errors.New(strings.Join(te.Errors, "; "))
		}
		return nil, err
	}
	if err := c.check(&root); err != nil {
		return nil, err
	}
	return &c, nil
}

// fieldError names a field (as a path such as appliances[0].ttl) and its
// line in the file.
type fieldError struct {
	path string
	line int
	msg  string
}

func (e *fieldError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.line, e.path, e.msg)
	}
	return e.path + ": " + e.msg
}

// lineOf finds the line of a field given as keys and indexes; it returns
// the line of the deepest part found.
func lineOf(root *yaml.Node, path ...any) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		case int:
			if n.Kind != yaml.SequenceNode || p >= len(n.Content) {
				return line
			}
			n = n.Content[p]
			line = n.Line
		}
	}
	return line
}

func (c *Config) check(root *yaml.Node) error {
	errf := func(msg string, path ...any) error {
		var b strings.Builder
		for _, p := range path {
			switch p := p.(type) {
			case string:
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(p)
			case int:
				fmt.Fprintf(&b, "[%d]", p)
			}
		}
		return &fieldError{path: b.String(), line: lineOf(root, path...), msg: msg}
	}
	if c.DNS == "" {
		return errf("required: the address to serve DNS on, such as 127.0.0.1:53", "dns")
	}
	if _, _, err := net.SplitHostPort(c.DNS); err != nil {
		return errf(fmt.Sprintf("%q: want HOST:PORT", c.DNS), "dns")
	}
	if c.Control != "" {
		ap, err := netip.ParseAddrPort(c.Control)
		if err != nil || !ap.Addr().IsLoopback() {
			return errf(fmt.Sprintf("%q: want a loopback IP:PORT such as 127.0.0.1:5380", c.Control), "control")
		}
	}
	if c.Forward != "" {
		if _, _, err := net.SplitHostPort(c.Forward); err != nil {
			return errf(fmt.Sprintf("%q: want HOST:PORT of a resolver, or nothing to refuse other names", c.Forward), "forward")
		}
	}
	c.forwardClients = nil
	for j, v := range c.ForwardClients {
		p, err := parseNetwork(v)
		if err != nil {
			return errf(fmt.Sprintf("%q: want a network such as 192.168.1.0/24 or an IP address", v), "forward_clients", j)
		}
		c.forwardClients = append(c.forwardClients, p)
	}
	if len(c.ForwardClients) > 0 && c.Forward == "" {
		return errf("given without forward: set forward to a resolver, or remove forward_clients", "forward_clients")
	}
	if len(c.forwardClients) == 0 {
		c.forwardClients = defaultForwardClients
	}
	if len(c.Zones) == 0 && c.Signpost == nil {
		return errf("at least one zone is required (or signpost)", "zones")
	}
	if sp := c.Signpost; sp != nil {
		if sp.Data == "" {
			return errf("required: the data directory of a signpost node on this host", "signpost", "data")
		}
		sp.clients = nil
		for j, v := range sp.Clients {
			p, err := parseNetwork(v)
			if err != nil {
				return errf(fmt.Sprintf("%q: want a network such as 192.168.1.0/24 or an IP address", v), "signpost", "clients", j)
			}
			sp.clients = append(sp.clients, p)
		}
		if sp.Clients == nil {
			sp.clients = defaultForwardClients
		}
	}
	seenZone := map[string]bool{}
	for i := range c.Zones {
		z := &c.Zones[i]
		if _, ok := dns.IsDomainName(z.Name); !ok || z.Name == "" {
			return errf(fmt.Sprintf("%q is not a domain name", z.Name), "zones", i, "name")
		}
		z.Name = dns.CanonicalName(z.Name)
		if seenZone[z.Name] {
			return errf(fmt.Sprintf("zone %s is given twice", z.Name), "zones", i, "name")
		}
		seenZone[z.Name] = true
		if len(z.NS) == 0 {
			z.NS = []string{"ns." + z.Name}
		}
		for j, ns := range z.NS {
			if _, ok := dns.IsDomainName(ns); !ok {
				return errf(fmt.Sprintf("%q is not a domain name", ns), "zones", i, "ns", j)
			}
			z.NS[j] = dns.CanonicalName(ns)
		}
		if z.Hostmaster == "" {
			z.Hostmaster = "hostmaster." + z.Name
		}
		if _, ok := dns.IsDomainName(z.Hostmaster); !ok {
			return errf(fmt.Sprintf("%q is not a domain name", z.Hostmaster), "zones", i, "hostmaster")
		}
		z.Hostmaster = dns.CanonicalName(z.Hostmaster)
		if z.TTL == 0 {
			z.TTL = Duration(defaultZoneTTL)
		}
	}
	seenName := map[string]bool{}
	seenAddr := map[string]string{}
	for i := range c.Appliances {
		a := &c.Appliances[i]
		if _, ok := dns.IsDomainName(a.Name); !ok || a.Name == "" {
			return errf(fmt.Sprintf("%q is not a domain name", a.Name), "appliances", i, "name")
		}
		a.Name = dns.CanonicalName(a.Name)
		if c.zoneOf(a.Name) == nil {
			return errf(fmt.Sprintf("%s is in none of the zones", a.Name), "appliances", i, "name")
		}
		if seenName[a.Name] {
			return errf(fmt.Sprintf("%s is given twice", a.Name), "appliances", i, "name")
		}
		seenName[a.Name] = true
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			return errf(fmt.Sprintf("%q is not an IP address", a.Address), "appliances", i, "address")
		}
		a.Address = ip.String()
		if len(a.Ports) == 0 {
			return errf("at least one port is required", "appliances", i, "ports")
		}
		for j, p := range a.Ports {
			if p.Name == "" {
				return errf("required: the service's name for the port", "appliances", i, "ports", j, "name")
			}
			if p.Port < 1 || p.Port > 65535 {
				return errf(fmt.Sprintf("%d: want 1 to 65535", p.Port), "appliances", i, "ports", j, "port")
			}
			key := net.JoinHostPort(a.Address, strconv.Itoa(p.Port))
			if other, ok := seenAddr[key]; ok {
				return errf(fmt.Sprintf("%s is already used by %s", key, other), "appliances", i, "ports", j, "port")
			}
			seenAddr[key] = a.Name
		}
		if a.TTL == 0 {
			a.TTL = Duration(DefaultTTL)
		}
		if a.Idle == "" {
			a.Idle = IdleStop
		}
		if a.BootTimeout == 0 {
			a.BootTimeout = Duration(DefaultBootTimeout)
		}
		if a.Spare == 0 {
			a.Spare = SpareAge(DefaultSpareAge)
		}
		if a.Spare != SpareOff && time.Duration(a.Spare) < minSpareAge {
			return errf(fmt.Sprintf("%v: want at least %v, or off", time.Duration(a.Spare), minSpareAge), "appliances", i, "spare")
		}
		if a.ProxyProtocol == nil {
			on := a.Launcher.Kind == "qemu"
			a.ProxyProtocol = &on
		}
		if *a.ProxyProtocol && a.Spare != SpareOff && time.Duration(a.Spare) >= app.ProxyHeaderTimeout {
			return errf(fmt.Sprintf("%v: with proxy_protocol a spare must be replaced before the appliance's %v wait for the PROXY header ends: want less, or off",
				time.Duration(a.Spare), app.ProxyHeaderTimeout), "appliances", i, "spare")
		}
		l := &a.Launcher
		if l.Slots && (l.Kind == "process" || a.Data == "") {
			return errf("slots are kept beside the data disk: the qemu, firecracker or xl launcher with data only", "appliances", i, "launcher", "slots")
		}
		switch l.Kind {
		case "process":
			if len(l.Command) == 0 {
				return errf("required for the process launcher: the program and its arguments", "appliances", i, "launcher", "command")
			}
			for j, e := range l.Env {
				if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
					return errf(fmt.Sprintf("%q: want KEY=VALUE", e), "appliances", i, "launcher", "env", j)
				}
			}
		case "qemu", "xl", "firecracker":
			if (l.Kind == "qemu" || l.Slots) && l.Image == "" {
				return errf("required for the qemu launcher and with slots: the image folder (nymote build -o DIR)", "appliances", i, "launcher", "image")
			}
			if l.Kind != "qemu" {
				if l.Config == "" && !l.Slots {
					return errf("required for the "+l.Kind+" launcher: its configuration file", "appliances", i, "launcher", "config")
				}
				if _, err := netip.ParseAddr(l.Guest); err != nil {
					return errf(fmt.Sprintf("%q: want the guest's IP address", l.Guest), "appliances", i, "launcher", "guest")
				}
			}
			if l.KVM == "" {
				l.KVM = launch.KVMAuto
			}
			if launch.CheckKVMMode(l.KVM) != nil {
				return errf(fmt.Sprintf("%q: want auto, on or off", l.KVM), "appliances", i, "launcher", "kvm")
			}
			if l.MemoryMiB < 0 {
				return errf("must not be negative", "appliances", i, "launcher", "memory")
			}
		case "":
			return errf("required: process, qemu, xl or firecracker", "appliances", i, "launcher", "kind")
		default:
			return errf(fmt.Sprintf("%q: want process, qemu, xl or firecracker", l.Kind), "appliances", i, "launcher", "kind")
		}
		if l.Kind != "process" && (len(l.Command) > 0 || len(l.Env) > 0) {
			return errf("only the process launcher takes a command", "appliances", i, "launcher", "command")
		}
	}
	for i := range c.Zones {
		if err := c.checkMail(&c.Zones[i], func(msg string, path ...any) error {
			return errf(msg, append([]any{"zones", i, "mail"}, path...)...)
		}); err != nil {
			return err
		}
	}
	return nil
}

// checkMail checks a zone's mail: and fills in its defaults.
func (c *Config) checkMail(z *Zone, errf func(string, ...any) error) error {
	m := z.Mail
	if m == nil {
		return nil
	}
	if m.Domain == "" {
		m.Domain = z.Name
	}
	if _, ok := dns.IsDomainName(m.Domain); !ok {
		return errf(fmt.Sprintf("%q is not a domain name", m.Domain), "domain")
	}
	m.Domain = dns.CanonicalName(m.Domain)
	if c.zoneOf(m.Domain) != z {
		return errf(fmt.Sprintf("%s is not in zone %s", m.Domain, z.Name), "domain")
	}
	if m.Appliance != "" {
		name := dns.CanonicalName(m.Appliance)
		var a *ApplianceConfig
		for k := range c.Appliances {
			if c.Appliances[k].Name == name {
				a = &c.Appliances[k]
			}
		}
		if a == nil {
			return errf(fmt.Sprintf("%s is none of the appliances", m.Appliance), "appliance")
		}
		m.Appliance = name
		if m.Hostname == "" {
			m.Hostname = a.Name
		}
		if m.IPs == nil {
			m.IPs = []string{a.Address}
		}
		if m.Data == "" && a.Launcher.Kind == "process" {
			m.Data = a.Data
		}
	}
	if m.Hostname == "" {
		return errf("required (or appliance): the mail server's name", "hostname")
	}
	if _, ok := dns.IsDomainName(m.Hostname); !ok {
		return errf(fmt.Sprintf("%q is not a domain name", m.Hostname), "hostname")
	}
	m.Hostname = dns.CanonicalName(m.Hostname)
	m.ips = nil
	for j, v := range m.IPs {
		ip := net.ParseIP(v)
		if ip == nil {
			return errf(fmt.Sprintf("%q is not an IP address", v), "ips", j)
		}
		m.ips = append(m.ips, ip)
	}
	if m.Data == "" {
		return errf("required (or a process appliance): the mail appliance's data directory, where its DKIM keys are", "data")
	}
	if fi, err := os.Stat(m.Data); err == nil && !fi.IsDir() {
		return errf(fmt.Sprintf("%s is not a directory: jitsu reads the DKIM keys from a data directory (a data disk is not read yet)", m.Data), "data")
	}
	switch m.DMARCPolicy {
	case "":
		m.DMARCPolicy = "reject"
	case "reject", "quarantine", "none":
	default:
		return errf(fmt.Sprintf("%q: want reject, quarantine or none", m.DMARCPolicy), "dmarc_policy")
	}
	switch m.MTASTSMode {
	case "":
		m.MTASTSMode = "enforce"
	case "enforce", "testing", "none":
	default:
		return errf(fmt.Sprintf("%q: want enforce, testing or none", m.MTASTSMode), "mta_sts_mode")
	}
	if m.CAA == nil {
		m.CAA = []string{"letsencrypt.org"}
	}
	if m.TTL == 0 {
		m.TTL = Duration(time.Hour)
	}
	return nil
}

// parseNetwork parses a CIDR network or a single IP address (a /32 or
// /128), in its canonical (masked, unmapped) form.
func parseNetwork(s string) (netip.Prefix, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		ip = ip.Unmap()
		return netip.PrefixFrom(ip, ip.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// forwardsFor says whether queries from addr may be forwarded.
func (c *Config) forwardsFor(addr net.Addr) bool {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.UDPAddr:
		ip = a.AddrPort().Addr()
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	default:
		return false
	}
	ip = ip.Unmap()
	clients := c.forwardClients
	if clients == nil { // a configuration not from ParseConfig
		clients = defaultForwardClients
	}
	for _, p := range clients {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// zoneOf returns the zone that name (canonical) is in, the longest match.
func (c *Config) zoneOf(name string) *Zone {
	var best *Zone
	for i := range c.Zones {
		z := &c.Zones[i]
		if dns.IsSubDomain(z.Name, name) && (best == nil || len(z.Name) > len(best.Name)) {
			best = z
		}
	}
	return best
}

// SetSignpost makes the server answer for the person's network of the
// signpost node whose data directory is dir (as signpost: data: DIR in the
// configuration; nymote summon --signpost DIR), asked from loopback or
// from inside the network unless the configuration names other clients.
func (c *Config) SetSignpost(dir string) {
	if c.Signpost == nil {
		c.Signpost = &SignpostConfig{clients: defaultForwardClients}
	}
	c.Signpost.Data = dir
}
