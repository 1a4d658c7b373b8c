// Command hello is the smallest Nymote appliance, for boot tests and
// benchmarks: it counts its boots in a file on the data disk and greets
// every TCP connection on port 7 (host: 1007) with
//
//	hello from nymote (boot N)
//
// then echoes each line it receives. Build it with nymote build hello.
// With the option crash=now (nymote.crash=now on the kernel command line)
// it fails at once, for tests of the runtime's crash handling; with
// release=R it says "hello from nymote R (boot N)", for update tests. Its
// update administrator (appliance.Env.SetUpdateAuth) is the name and
// password on the one line of hello-admin in the data directory, if that
// file exists (hello has no store to keep users in).
package main

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/update"
)

func main() { appliance.Main(Service()) }

// Service is the hello appliance.
func Service() appliance.Service {
	return appliance.Service{App: app.Hello, Serve: serve, Migrations: migrations}
}

// migrations are hello's data migrations: none, except in images built
// for tests with the tag nymote_migrationtest (migration_test_tag.go).
var migrations map[string]update.MigrationFunc

// countFile holds the number of boots, in the data directory.
const countFile = "hello-boots"

// adminFile holds the update administrator's name and password.
const adminFile = "hello-admin"

func serve(ctx context.Context, env *appliance.Env) error {
	ln := env.Listeners["hello"]
	defer ln.Close()
	if env.Config["crash"] == "now" {
		return errors.New("hello: crashing as asked (crash=now)")
	}
	n, err := countBoot(env.DataDir)
	if err != nil {
		return err
	}
	if env.SetUpdateAuth != nil {
		if b, err := os.ReadFile(filepath.Join(env.DataDir, adminFile)); err == nil {
			name, pw, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
			env.SetUpdateAuth(func(u, p string) error {
				if subtle.ConstantTimeCompare([]byte(u+" "+p), []byte(name+" "+pw)) != 1 {
					return errors.New("wrong name or password")
				}
				return nil
			})
		}
	}
	greeting := "hello from nymote"
	if r := env.Config["release"]; r != "" {
		greeting += " " + r
	}
	var wg sync.WaitGroup
	conns := map[net.Conn]bool{}
	var mu sync.Mutex
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				wg.Wait()
				return nil
			}
			return err
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			fmt.Fprintf(c, "%s (boot %d)\r\n", greeting, n)
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintf(c, "%s\r\n", sc.Text())
			}
		}()
	}
}

// countBoot adds one to the boot counter on the data disk and syncs it.
func countBoot(dir string) (int, error) {
	path := filepath.Join(dir, countFile)
	n := 0
	if b, err := os.ReadFile(path); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	n++
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return 0, fmt.Errorf("hello: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d\n", n)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err != nil {
		return 0, fmt.Errorf("hello: counting boots: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return n, nil
}
