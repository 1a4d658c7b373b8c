package store

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// A push over git smart HTTP is our own client (go-git's encodes the whole
// request, pack included, into memory before it posts it): the reference
// advertisement is read with a GET of info/refs, then the command and the
// pack are posted as one streamed body, read from the pack as the
// connection takes it, and the report-status answer is read back.

// dialTransport is the process's HTTP transport for remotes: it dials with
// the Remote.Dial carried in each request's context (dialKey), and with
// net.Dialer when there is none. A remote that is cut off (a replica's
// peer behind a partition) fails a connection in 10 s, not the sync's
// whole timeout, and a connection left idle across a partition is not
// taken up again after 30 s (a NAT may have forgotten it meanwhile).
var dialTransport = sync.OnceValue(func() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	d := net.Dialer{Timeout: 10 * time.Second}
	tr.IdleConnTimeout = 30 * time.Second
	tr.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		if dial, ok := ctx.Value(dialKey{}).(func(context.Context, string, string) (net.Conn, error)); ok && dial != nil {
			return dial(ctx, network, address)
		}
		return d.DialContext(ctx, network, address)
	}
	return tr
})

// caTransports are dialTransport's clones that trust a CA bundle besides
// the system's roots, one per bundle (a replica's peers share one), kept
// for the process so that their idle connections are taken up again.
var caTransports struct {
	mu sync.Mutex
	m  map[[sha1.Size]byte]*http.Transport
}

// httpClient returns the client for remote r.
func (r Remote) httpClient() (*http.Client, error) {
	if len(r.CABundle) == 0 {
		return &http.Client{Transport: dialTransport()}, nil
	}
	key := sha1.Sum(r.CABundle)
	caTransports.mu.Lock()
	defer caTransports.mu.Unlock()
	if tr := caTransports.m[key]; tr != nil {
		return &http.Client{Transport: tr}, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(r.CABundle) {
		return nil, errors.New("the CA bundle holds no PEM certificate")
	}
	tr := dialTransport().Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if caTransports.m == nil {
		caTransports.m = map[[sha1.Size]byte]*http.Transport{}
	}
	caTransports.m[key] = tr
	return &http.Client{Transport: tr}, nil
}

// redacted is r's URL without a password it may hold.
func (r Remote) redacted() string {
	if u, err := url.Parse(r.URL); err == nil && u.User != nil {
		return u.Redacted()
	}
	return r.URL
}

// pushConn is one push's requests to an HTTP remote.
type pushConn struct {
	r      Remote
	client *http.Client
	base   string // the URL without a trailing slash
}

func newPushConn(r Remote) (*pushConn, error) {
	c, err := r.httpClient()
	if err != nil {
		return nil, err
	}
	return &pushConn{r: r, client: c, base: strings.TrimSuffix(r.URL, "/")}, nil
}

func (p *pushConn) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, body)
	if err != nil {
		return nil, err
	}
	if p.r.Username != "" || p.r.Password != "" {
		req.SetBasicAuth(p.r.Username, p.r.Password)
	}
	req.Header.Set("User-Agent", "nymote")
	return req, nil
}

// do sends req and returns its response if it is a 2xx one with the
// Content-Type want; otherwise an error that says what the remote
// answered (statusError).
func (p *pushConn) do(req *http.Request, want string) (*http.Response, error) {
	resp, err := p.client.Do(req)
	if err != nil {
		// (*url.Error names the URL, which may hold a password.)
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, p.r.redacted(), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	if ct := resp.Header.Get("Content-Type"); ct != want {
		resp.Body.Close()
		return nil, fmt.Errorf("the remote answered with Content-Type %q, not %q: not a git smart HTTP server", ct, want)
	}
	return resp, nil
}

// statusError describes a response that is not a 2xx one, with the first
// line of its text (as a git server writes why it refused).
func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	msg, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if msg = oneLine(msg); len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	status := resp.Status
	if msg != "" {
		status += ": " + msg
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return &httpError{"authentication failed: the remote refused the user name or password (HTTP " + status + ")", transport.ErrAuthenticationRequired}
	case http.StatusForbidden:
		return &httpError{"the remote refused access (HTTP " + status + ")", transport.ErrAuthorizationFailed}
	case http.StatusNotFound:
		return &httpError{"no git repository at this URL (HTTP " + status + ")", transport.ErrRepositoryNotFound}
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		// Any failed push is tried again later (the replica engine
		// retries, waiting longer after each failure).
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			e := &BusyError{msg: fmt.Sprintf("the remote is busy, try again after %s s (HTTP %s)", oneLine(ra), status)}
			if n, err := strconv.Atoi(strings.TrimSpace(ra)); err == nil && n > 0 {
				e.After = time.Duration(n) * time.Second
			}
			return e
		}
		return &BusyError{msg: fmt.Sprintf("the remote is busy, try again later (HTTP %s)", status)}
	}
	return fmt.Errorf("HTTP %s", status)
}

// BusyError is a push an HTTP remote turned away for now (503 or 429):
// a node that is still copying its store, say. After is the wait the
// remote asked for (Retry-After, in seconds), zero if it named none.
type BusyError struct {
	After time.Duration
	msg   string
}

func (e *BusyError) Error() string { return e.msg }

// httpError is a refusal by an HTTP remote, that is go-git's error
// (errors.Is) as its push returned.
type httpError struct {
	msg string
	err error
}

func (e *httpError) Error() string { return e.msg }
func (e *httpError) Unwrap() error { return e.err }

// advertised reads the remote's reference advertisement for a push.
func (p *pushConn) advertised(ctx context.Context) (*packp.AdvRefs, error) {
	req, err := p.request(ctx, http.MethodGet, "/info/refs?service="+transport.ReceivePackServiceName, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "*/*")
	resp, err := p.do(req, "application/x-git-receive-pack-advertisement")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	ar := packp.NewAdvRefs()
	if err := ar.Decode(io.LimitReader(resp.Body, maxAdvertisement)); err != nil && !errors.Is(err, packp.ErrEmptyAdvRefs) {
		return nil, fmt.Errorf("reading the remote's references: %w", err)
	}
	return ar, nil
}

// maxAdvertisement bounds a reference advertisement read (a store's
// branches are few).
const maxAdvertisement = 16 << 20

// receivePack posts the update of branch name from old to new (old zero to
// create it) with pack, streamed, and reads the remote's report. caps are
// the capabilities that the remote advertised.
func (p *pushConn) receivePack(ctx context.Context, caps *capability.List, name plumbing.ReferenceName, old, new Hash, pack io.Reader) error {
	report := caps.Supports(capability.ReportStatus)
	cmd := fmt.Sprintf("%s %s %s", old, new, name)
	if report {
		cmd += "\x00" + capability.ReportStatus.String()
	}
	var head bytes.Buffer
	e := pktline.NewEncoder(&head)
	if err := e.EncodeString(cmd); err != nil {
		return err
	}
	if err := e.Flush(); err != nil {
		return err
	}
	body := &pushBody{r: io.MultiReader(&head, pack)}
	req, err := p.request(ctx, http.MethodPost, "/"+transport.ReceivePackServiceName, body)
	if err != nil {
		return err
	}
	// A request on a kept connection that the server closed meanwhile is
	// sent again on a new one if nothing of it was read yet (the transport
	// reuses the body then); once read, it cannot be.
	req.GetBody = func() (io.ReadCloser, error) {
		return nil, errors.New("the connection failed while the push was sent")
	}
	req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
	req.Header.Set("Accept", "application/x-git-receive-pack-result")
	resp, err := p.do(req, "application/x-git-receive-pack-result")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the remote's report: %w", err)
	}
	if !report {
		return nil // (a remote without report-status says nothing)
	}
	if msg, ok := errLine(b); ok {
		return fmt.Errorf("the remote refused the push: %s", oneLine(msg))
	}
	rs := packp.NewReportStatus()
	if err := rs.Decode(bytes.NewReader(b)); err != nil {
		return fmt.Errorf("reading the remote's report: %w", err)
	}
	return rs.Error()
}

// errLine returns the message of a pkt-line "ERR msg" at the start of b
// (a server that refuses a request writes one instead of a report).
func errLine(b []byte) (string, bool) {
	s := pktline.NewScanner(bytes.NewReader(b))
	if !s.Scan() {
		return "", false
	}
	msg, ok := bytes.CutPrefix(s.Bytes(), []byte("ERR "))
	return strings.TrimSpace(string(msg)), ok
}

// pushBody is a push request's body. The transport closes it when it has
// sent it (perhaps after Do returns, in its own goroutine); the pack is
// closed by the push.
type pushBody struct{ r io.Reader }

func (b *pushBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *pushBody) Close() error               { return nil }
