// Package app describes Nymote's appliance programs as data: each app's
// name, main package, ports (name, number, protocol, implicit TLS or not)
// and host defaults are declared here once, in Apps, and read by everything
// else: the app's service (appliance.Service carries its App), images (what
// to compile, which ports a QEMU script forwards, the manifest), the host
// tool (nymote run's forwards) and jitsu.
//
// It also holds the few facts about the appliance runtime that programs
// which never run an appliance need: the host port rule (HostPort), whether
// appliances are built with the netstack (NetstackBuiltIn) and how long a
// proxy's PROXY header may take (ProxyHeaderTimeout). It imports only the
// standard library, so the host tool and jitsu can use it without linking
// the PID 1 runtime (package appliance: gVisor, u-root); the dependency
// guard test in internal/deptest keeps it so.
package app

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// App is one appliance program.
type App struct {
	// Name is the app's name on the command line and in console lines
	// ("mail").
	Name string
	// Package is its main package, whose main is appliance.Main.
	Package string
	// Ports are the TCP ports it serves inside an appliance; the runtime
	// opens one listener per port, and nymote run forwards each to the
	// host at HostPort.
	Ports []Port
	// Cmdline are kernel command line options the app's image needs
	// (nymote.*).
	Cmdline []string
	// Data is the format of the data the app keeps on its data disk:
	// the version its code writes, the older ones it can still serve
	// from, and the forward migrations it carries. The zero value is
	// format 1 with no migrations (every app today).
	Data DataFormat
}

// DataFormat says which format of the data on its data disk an app's code
// writes (Version), which older formats it can serve from as they are
// (Reads: an image's test boot runs on the data as it is, before any
// migration), and the forward migrations it carries (Migrations, each from
// one format to the next). Adding a migration bumps Version; the
// migration's code is the app's (appliance.Service.Migrations, by Name).
// Images write it into their signed manifest (data_format), so an
// appliance and the host tool know what an image does to a data disk
// before they boot it (see package update).
type DataFormat struct {
	// Version is the format the app writes; 0 means 1.
	Version int `json:"version"`
	// Reads are the older formats the app serves from unchanged.
	Reads []int `json:"reads,omitempty"`
	// Migrations are the forward steps, each from From to From+1.
	Migrations []Migration `json:"migrations,omitempty"`
}

// Migration names one forward step of an app's data, from format From to
// From+1.
type Migration struct {
	From int    `json:"from"`
	Name string `json:"name"`
}

// Current is the format the app writes (Version, or 1).
func (f DataFormat) Current() int {
	if f.Version <= 0 {
		return 1
	}
	return f.Version
}

// CanRead says whether the app serves from data in format v as it is:
// its own format or one of Reads.
func (f DataFormat) CanRead(v int) bool {
	if v == f.Current() {
		return true
	}
	for _, r := range f.Reads {
		if r == v {
			return true
		}
	}
	return false
}

// Path returns the migrations that take data in format from to Current,
// in order, or an error naming the first step the app does not carry.
func (f DataFormat) Path(from int) ([]Migration, error) {
	if from > f.Current() {
		return nil, fmt.Errorf("data format %d is newer than format %d", from, f.Current())
	}
	var out []Migration
	for v := from; v < f.Current(); v++ {
		m, ok := f.step(v)
		if !ok {
			return nil, fmt.Errorf("no migration from data format %d to %d (format %d carries %s)", v, v+1, f.Current(), f.describeSteps())
		}
		out = append(out, m)
	}
	return out, nil
}

func (f DataFormat) step(from int) (Migration, bool) {
	for _, m := range f.Migrations {
		if m.From == from {
			return m, true
		}
	}
	return Migration{}, false
}

func (f DataFormat) describeSteps() string {
	if len(f.Migrations) == 0 {
		return "no migrations"
	}
	var s []string
	for _, m := range f.Migrations {
		s = append(s, fmt.Sprintf("%d→%d %s", m.From, m.From+1, m.Name))
	}
	return strings.Join(s, ", ")
}

// Check checks the declaration: versions from 1, Reads older than
// Version, each migration a step below Version with a unique name and
// start.
func (f DataFormat) Check() error {
	if f.Version < 0 {
		return fmt.Errorf("data format version %d", f.Version)
	}
	for _, r := range f.Reads {
		if r < 1 || r >= f.Current() {
			return fmt.Errorf("data format %d reads format %d: only older formats, from 1", f.Current(), r)
		}
	}
	names, froms := map[string]bool{}, map[int]bool{}
	for _, m := range f.Migrations {
		if m.Name == "" || names[m.Name] {
			return fmt.Errorf("data migration from format %d: name %q empty or used twice", m.From, m.Name)
		}
		if m.From < 1 || m.From >= f.Current() || froms[m.From] {
			return fmt.Errorf("data migration %s: from format %d: not below format %d, or a second step from there", m.Name, m.From, f.Current())
		}
		names[m.Name], froms[m.From] = true, true
	}
	return nil
}

// Port is one named TCP port of an app.
type Port struct {
	// Name is the port's service name ("imap"), unique in its app.
	Name string
	// Port is the port number inside an appliance (143).
	Port int
	// Proto is the application protocol spoken on the port ("imap",
	// "smtp", "http", "echo").
	Proto string
	// TLS is set when the port speaks TLS from the first byte (IMAPS,
	// SMTP submissions, HTTPS); ports that offer STARTTLS are not.
	TLS bool
	// HostDefault, when set, is where the app's host mode serves this
	// port (in plain text, for trying it out on loopback) when its
	// command line names no listener at all.
	HostDefault string
}

// HostPortOffset is what a host process (and nymote run's forwards) adds
// to an app's ports under 1024 unless told otherwise (--port-offset), so
// that an unprivileged user can bind them: mail's 143 becomes 1143.
const HostPortOffset = 1000

// HostPort is where a host process listens for port p by default, and
// where nymote run forwards it: the same port, or p+offset for ports
// under 1024 (see HostPortOffset).
func HostPort(p, offset int) int {
	if p < 1024 {
		return p + offset
	}
	return p
}

// NetstackBuiltIn says whether appliance programs are built with the
// gVisor netstack, the default network of an appliance (nymote.net=netstack);
// without it they use the guest kernel's IP stack (nymote.net=kernel).
const NetstackBuiltIn = true

// ProxyHeaderTimeout is how long a connection from a trusted proxy may
// take to send its PROXY protocol header before the appliance runtime
// closes it (see appliance.ProxyListener). A proxy that holds connections
// open before sending (jitsu's spares) must send sooner.
const ProxyHeaderTimeout = 20 * time.Second

// GoodMarker is in the console line the appliance runtime prints once the
// appliance is good: its service has kept serving for the settle time
// (nymote.settle, DefaultSettle) and its data disk is mounted read-write:
//
//	nymote: mail good: serving for 5s, data disk mounted read-write
//
// A launcher test-booting a new image (package update) commits the image
// on this line, and returns to the previous image when it does not come.
const GoodMarker = "good: serving"

// DefaultSettle is how long a service must keep serving before the runtime
// calls the appliance good (see GoodMarker): a service that fails at start
// fails well within it.
const DefaultSettle = 5 * time.Second

// UpdatePort is the appliance runtime's own port, beside the app's: HTTPS,
// taking signed images (nymote update; package update's Receiver). The
// runtime opens it when the launcher has attached an update disk
// (nymote.updatedisk) and the image trusts a signing key.
var UpdatePort = Port{Name: "update", Port: 9443, Proto: "http", TLS: true}

// UpdateRebootLine is in the console line the runtime prints when it stops
// to reboot into an update it received (on its update port): a launcher
// that sees it (and then the VM's exit) boots the appliance again, from
// the slot the update went to.
const UpdateRebootLine = "rebooting into a received update"

// MigrateRebootLine is in the console line the runtime prints when it
// stops after the good line of a test boot whose image migrates the data
// (see DataFormat): the launcher, which has committed the image on the
// good line, boots it again, and that boot (no longer a test) migrates the
// data before serving. A launcher treats it as UpdateRebootLine.
const MigrateRebootLine = "rebooting to migrate the data"

// HelloTestMigration names the data migration of hello built for tests
// with the tag nymote_migrationtest (format 1 to 2: a commit in its store);
// hello has none otherwise.
const HelloTestMigration = "hello-test-note"

// The apps, declared once.
var (
	// Hello is the smallest appliance, for boot tests and benchmarks: it
	// greets and echoes on port 7.
	Hello = App{
		Name: "hello", Package: "github.com/nymote/nymote/appliance/hello",
		Ports: []Port{{Name: "hello", Port: 7, Proto: "echo"}},
	}
	// Mail serves IMAP and SMTP. Its host mode has no default listeners:
	// its command line names them.
	Mail = App{
		Name: "mail", Package: "github.com/nymote/nymote/apps/mail",
		Ports: []Port{
			{Name: "imap", Port: 143, Proto: "imap"},
			{Name: "smtp", Port: 25, Proto: "smtp"},
			{Name: "submission", Port: 587, Proto: "smtp"},
			{Name: "imaps", Port: 993, Proto: "imap", TLS: true},
			{Name: "submissions", Port: 465, Proto: "smtp", TLS: true},
			// HTTP: ACME http-01 and client autoconfiguration, else a
			// redirect to HTTPS; HTTPS: ACME tls-alpn-01, the MTA-STS
			// policy, autoconfiguration (and what others mount on
			// mailsvc.Web).
			{Name: "http", Port: 80, Proto: "http"},
			{Name: "https", Port: 443, Proto: "http", TLS: true},
		},
	}
	// Contacts is a CardDAV server; on a host without listener flags it
	// serves plain HTTP on loopback port 8008.
	Contacts = App{
		Name: "contacts", Package: "github.com/nymote/nymote/apps/contacts",
		Ports: davPorts("127.0.0.1:8008"),
	}
	// Calendar is a CalDAV server; on a host without listener flags it
	// serves plain HTTP on loopback port 8009.
	Calendar = App{
		Name: "calendar", Package: "github.com/nymote/nymote/apps/calendar",
		Ports: davPorts("127.0.0.1:8009"),
	}
)

// davPorts are a DAV app's ports: HTTP (which redirects to HTTPS) and
// HTTPS.
func davPorts(hostHTTP string) []Port {
	return []Port{
		{Name: "http", Port: 80, Proto: "http", HostDefault: hostHTTP},
		{Name: "https", Port: 443, Proto: "http", TLS: true},
	}
}

// Apps are the apps by name.
var Apps = map[string]App{
	Hello.Name: Hello, Mail.Name: Mail, Contacts.Name: Contacts, Calendar.Name: Calendar,
}

// Names returns the names of Apps, sorted.
func Names() []string {
	var names []string
	for n := range Apps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the app called name.
func Lookup(name string) (App, error) {
	a, ok := Apps[name]
	if !ok {
		return App{}, fmt.Errorf("unknown app %q (known apps: %s)", name, strings.Join(Names(), ", "))
	}
	return a, nil
}

// Port returns a's port called name.
func (a App) Port(name string) (Port, bool) {
	for _, p := range a.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return Port{}, false
}
