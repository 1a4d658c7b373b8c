package images

import (
	"fmt"
	"sort"
	"strings"
)

// App is an appliance program that images can build.
type App struct {
	// Name is the app's name on the command line.
	Name string
	// Package is its main package (which calls appliance.Main).
	Package string
	// Ports are the TCP ports it serves inside the appliance, by name;
	// nymote run forwards each to localhost (see appliance.HostPort).
	Ports []AppPort
	// Cmdline are kernel command line options the app needs (nymote.*).
	Cmdline []string
}

// AppPort is a named TCP port of an app.
type AppPort struct {
	Name string
	Port int
}

var apps = map[string]App{
	"hello": {
		Name: "hello", Package: "github.com/nymote/nymote/appliance/hello",
		Ports: []AppPort{{"hello", 7}},
	},
	"contacts": {
		Name: "contacts", Package: "github.com/nymote/nymote/apps/contacts",
		Ports: []AppPort{{"http", 80}, {"https", 443}},
	},
	"calendar": {
		Name: "calendar", Package: "github.com/nymote/nymote/apps/calendar",
		Ports: []AppPort{{"http", 80}, {"https", 443}},
	},
	"mail": {
		Name: "mail", Package: "github.com/nymote/nymote/apps/mail",
		Ports: []AppPort{{"imap", 143}, {"smtp", 25}, {"submission", 587}, {"imaps", 993}, {"submissions", 465}},
	},
}

// Apps returns the names of the apps images can build, sorted.
func Apps() []string {
	var names []string
	for n := range apps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LookupApp returns the app called name.
func LookupApp(name string) (App, error) {
	a, ok := apps[name]
	if !ok {
		return App{}, fmt.Errorf("images: unknown app %q (known apps: %s)", name, strings.Join(Apps(), ", "))
	}
	return a, nil
}
