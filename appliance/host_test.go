package appliance

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/appliance/appliancetest"
	"net"
	"strings"
	"testing"
	"time"
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
	var stdout, stderr appliancetest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- RunHost(ctx, echoService(envs), []string{"--data", "/srv/x", "--port", "a=0", "--port", "b=0", "--set", "greeting=hi"}, &stdout, &stderr)
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
		if want := name + " /srv/x hi\n"; line != want {
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
	tests := []struct {
		name string
		svc  Service
		args []string
		want string
	}{
		{"no data", failing, nil, "--data"},
		{"crash", failing, []string{"--data", "x", "--port", "p=0"}, "boom"},
		{"panic", panicking, []string{"--data", "x", "--port", "p=0"}, "panic: oops"},
		{"unknown port", failing, []string{"--data", "x", "--port", "q=1"}, `no port called "q"`},
		{"bad port", failing, []string{"--data", "x", "--port", "p=http"}, "NAME=PORT"},
		{"duplicate port", dup, []string{"--data", "x", "--port", "p=0"}, "used twice"},
		{"bad ip", failing, []string{"--data", "x", "--ip", "10.0.0.1"}, "--ip"},
		{"ip without netstack", failing, []string{"--data", "x", "--ip", "10.0.0.1/24"}, "--net tap:NAME"},
		{"bad link", failing, []string{"--data", "x", "--net", "wifi"}, "netstack"},
		{"bad log level", failing, []string{"--data", "x", "--log-level", "loud"}, "--log-level"},
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
