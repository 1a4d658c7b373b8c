package appliance

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/internal/testutil"
)

// echoService greets with its data dir and a config value, then closes.
func echoService(gotEnv chan<- *Env) Service {
	return Service{
		App: app.App{Name: "echo", Ports: []app.Port{{Name: "a"}, {Name: "b"}}},
		Serve: func(ctx context.Context, env *Env) error {
			gotEnv <- env
			for name, l := range env.Listeners {
				go func() {
					for {
						c, err := l.Accept()
						if err != nil {
							return
						}
						fmt.Fprintf(c, "%s %s %s\n", name, env.DataDir, env.Config["greeting"])
						c.Close()
					}
				}()
			}
			<-ctx.Done()
			for _, l := range env.Listeners {
				l.Close()
			}
			return nil
		},
	}
}

func TestRunHost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	envs := make(chan *Env, 1)
	var stdout, stderr testutil.Buffer
	done := make(chan error, 1)
	data := t.TempDir()
	go func() {
		done <- RunHost(ctx, echoService(envs), []string{"--data", data, "--port", "a=0", "--port", "b=0", "--set", "greeting=hi"}, &stdout, &stderr)
	}()
	var env *Env
	select {
	case env = <-envs:
	case err := <-done:
		t.Fatalf("RunHost: %v (%s)", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("the service did not start")
	}
	for _, name := range []string{"a", "b"} {
		addr := env.Listeners[name].Addr().String()
		if want := listenLine("echo", name, env.Listeners[name].Addr()); !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout %q lacks %q", stdout.String(), want)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if want := name + " " + data + " hi\n"; line != want {
			t.Errorf("port %s: got %q, want %q", name, line, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunHost after cancel: %v", err)
	}
}

func TestRunHostErrors(t *testing.T) {
	failing := Service{App: app.App{Name: "f", Ports: []app.Port{{Name: "p"}}}, Serve: func(ctx context.Context, env *Env) error {
		return errors.New("boom")
	}}
	panicking := Service{App: app.App{Name: "p", Ports: []app.Port{{Name: "p"}}}, Serve: func(ctx context.Context, env *Env) error {
		panic("oops")
	}}
	dup := Service{App: app.App{Name: "d", Ports: []app.Port{{Name: "p"}, {Name: "p"}}}, Serve: failing.Serve}
	x := t.TempDir()
	tests := []struct {
		name string
		svc  Service
		args []string
		want string
	}{
		{"no data", failing, nil, "--data"},
		{"crash", failing, []string{"--data", x, "--port", "p=0"}, "boom"},
		{"panic", panicking, []string{"--data", x, "--port", "p=0"}, "panic: oops"},
		{"unknown port", failing, []string{"--data", x, "--port", "q=1"}, `no port called "q"`},
		{"bad port", failing, []string{"--data", x, "--port", "p=http"}, "NAME=PORT"},
		{"duplicate port", dup, []string{"--data", x, "--port", "p=0"}, "used twice"},
		{"bad ip", failing, []string{"--data", x, "--ip", "10.0.0.1"}, "--ip"},
		{"ip without netstack", failing, []string{"--data", x, "--ip", "10.0.0.1/24"}, "--net tap:NAME"},
		{"bad link", failing, []string{"--data", x, "--net", "wifi"}, "netstack"},
		{"bad log level", failing, []string{"--data", x, "--log-level", "loud"}, "--log-level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errs bytes.Buffer
			err := RunHost(context.Background(), tc.svc, tc.args, &out, &errs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestTakeNetFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		rest []string
		nf   netFlags
		err  string
	}{
		{args: []string{"--data", "d", "--imap", ":143"}, rest: []string{"--data", "d", "--imap", ":143"}},
		{args: []string{"--net", "tap:t0", "--data", "d", "-ip=10.0.0.2/24", "--gw", "10.0.0.1", "-v"},
			rest: []string{"--data", "d", "-v"}, nf: netFlags{net: "tap:t0", ip: "10.0.0.2/24", gw: "10.0.0.1"}},
		{args: []string{"--net=host", "--", "--ip", "x"}, rest: []string{"--", "--ip", "x"}, nf: netFlags{net: "host"}},
		{args: []string{"net", "--network", "x"}, rest: []string{"net", "--network", "x"}},
		{args: []string{"--data", "d", "--net"}, err: "flag needs an argument: -net"},
	} {
		rest, nf, err := takeNetFlags(tc.args)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("takeNetFlags(%q): error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(rest) != fmt.Sprint(tc.rest) || nf != tc.nf {
			t.Errorf("takeNetFlags(%q) = %q, %+v, %v; want %q, %+v", tc.args, rest, nf, err, tc.rest, tc.nf)
		}
	}
}

// TestRunHostProgram: Run hands an app's own host-mode program its
// arguments without the runtime's network flags, and host sockets at
// 127.0.0.1; a network flag it cannot honour is an error before the
// program runs.
func TestRunHostProgram(t *testing.T) {
	var got *HostEnv
	svc := Service{App: app.App{Name: "own"}, Host: func(ctx context.Context, h *HostEnv) error {
		got = h
		ln, err := h.Network.Listen("tcp", net.JoinHostPort(h.Addr.String(), "0"))
		if err != nil {
			return err
		}
		return ln.Close()
	}}
	if err := Run(context.Background(), svc, []string{"--net", "host", "--own-flag", "x"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got == nil || fmt.Sprint(got.Args) != "[--own-flag x]" || got.Addr.String() != "127.0.0.1" {
		t.Fatalf("host program got %+v, want args [--own-flag x] at 127.0.0.1", got)
	}
	help := Service{App: app.App{Name: "own"}, Host: func(ctx context.Context, h *HostEnv) error {
		fs := flag.NewFlagSet("own", flag.ContinueOnError)
		fs.SetOutput(h.Stderr)
		fs.String("own-flag", "", "the app's own flag")
		return fs.Parse(h.Args)
	}}
	var usage bytes.Buffer
	if err := Run(context.Background(), help, []string{"-h"}, io.Discard, &usage); !errors.Is(err, flag.ErrHelp) || !strings.Contains(usage.String(), "-own-flag") || !strings.Contains(usage.String(), "-net host|tap:NAME") {
		t.Errorf("Run -h: %v, usage:\n%s\nwant the app's flags and the runtime's", err, usage.String())
	}
	got = nil
	for _, args := range [][]string{{"--ip", "10.0.0.2/24"}, {"--net", "wifi"}, {"--net", "tap:x", "--ip", "nope"}} {
		if err := Run(context.Background(), svc, args, io.Discard, io.Discard); err == nil || got != nil {
			t.Errorf("Run with %q: %v, host program ran: %v; want an error first", args, err, got != nil)
		}
	}
}
