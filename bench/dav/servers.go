package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nymote/nymote/store"
)

// server is one DAV server under test, with the address book and calendar
// the benchmark fills.
type server struct {
	name               string
	contacts, calendar string // collection URLs, with a trailing slash
	cmds               []*exec.Cmd
}

func (s *server) stop() {
	for _, c := range s.cmds {
		if c.Process != nil {
			c.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				c.Process.Kill()
				<-done
			}
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// spawn starts a server program, logging to dir/name.log.
func (s *server) spawn(dir, name string, args ...string) error {
	log, err := os.Create(filepath.Join(dir, filepath.Base(name)+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Servers go when the benchmark goes, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s.cmds = append(s.cmds, cmd)
	return nil
}

// waitHTTP waits until a server answers OPTIONS.
func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, "OPTIONS", url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not come up", url)
}

// startNymote runs apps/contacts and apps/calendar (built into bin), each on
// its own data directory as appliances are.
func startNymote(ctx context.Context, bin, dir string) (*server, error) {
	s := &server{name: "nymote"}
	var urls []string
	for _, app := range []string{"contacts", "calendar"} {
		data := filepath.Join(dir, app)
		st, err := store.InitData(data, store.Options{})
		if err != nil {
			return nil, err
		}
		err = st.AddUser(ctx, user, password, store.GitNone)
		st.Close()
		if err != nil {
			return nil, err
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := s.spawn(dir, filepath.Join(bin, app), "--data", data, "--http", addr, "--insecure-http", "--log-level", "warn"); err != nil {
			s.stop()
			return nil, err
		}
		urls = append(urls, "http://"+addr)
	}
	s.contacts, s.calendar = urls[0]+"/alice/default/", urls[1]+"/alice/default/"
	for _, u := range urls {
		if err := waitHTTP(ctx, u+"/"); err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

// startRadicale runs Radicale with its filesystem storage (fsync on, its
// default) and plain htpasswd users.
func startRadicale(ctx context.Context, c *client, dir string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte(user+":"+password+"\n"), 0o600); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("[server]\nhosts = 127.0.0.1:%d\n[auth]\ntype = htpasswd\nhtpasswd_filename = %s\nhtpasswd_encryption = plain\ndelay = 0\n[storage]\nfilesystem_folder = %s\n[rights]\ntype = owner_only\n[logging]\nlevel = warning\n",
		port, filepath.Join(dir, "users"), filepath.Join(dir, "collections"))
	cf := filepath.Join(dir, "config")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	s := &server{name: "radicale", contacts: base + "/alice/contacts/", calendar: base + "/alice/calendar/"}
	if err := s.spawn(dir, "radicale", "-C", cf); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, base+"/"); err != nil {
		s.stop()
		return nil, err
	}
	c.do("PROPFIND", base+"/alice/", "", "Depth", "0")
	mk := `<?xml version="1.0"?><D:mkcol xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype><D:collection/><C:addressbook/></D:resourcetype></D:prop></D:set></D:mkcol>`
	if st, body := c.do("MKCOL", s.contacts, mk); st != 201 {
		s.stop()
		return nil, fmt.Errorf("radicale MKCOL: %d %s", st, body)
	}
	if st, body := c.do("MKCALENDAR", s.calendar, ""); st != 201 {
		s.stop()
		return nil, fmt.Errorf("radicale MKCALENDAR: %d %s", st, body)
	}
	return s, nil
}

// startXandikos runs Xandikos (git-backed, like nymote) with its default
// address book and calendar. It has no authentication of its own; the
// client's credentials are ignored.
func startXandikos(ctx context.Context, dir string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	s := &server{name: "xandikos", contacts: base + "/alice/contacts/addressbook/", calendar: base + "/alice/calendars/calendar/"}
	if err := s.spawn(dir, "xandikos", "-d", filepath.Join(dir, "root"), "--defaults", "--current-user-principal", "/alice/", "-l", "127.0.0.1", "-p", fmt.Sprint(port)); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, base+"/"); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func hasPrefixAny(s string, ps ...string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// rss is the resident memory of each of the server's programs now and at
// its peak, as "name N MB (peak M MB)" (from /proc; left out where that
// cannot be read).
func (s *server) rss() []string {
	var out []string
	for _, c := range s.cmds {
		if c.Process == nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Process.Pid))
		if err != nil {
			continue
		}
		kb := map[string]int{}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
				kb[f[0]], _ = strconv.Atoi(f[1])
			}
		}
		if kb["VmRSS:"] > 0 {
			out = append(out, fmt.Sprintf("%s %.0f MB (peak %.0f MB)", filepath.Base(c.Path), float64(kb["VmRSS:"])/1024, float64(kb["VmHWM:"])/1024))
		}
	}
	return out
}
