package replica

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/nymote/nymote/store"
)

// Credentials. A person's login password and app passwords work on every
// node, but their hashes never enter the history (see store's credsync.go
// for the model): the user records replicate and name the hashes by id; the
// hashes travel beside the history, over this endpoint:
//
//	GET BASE/credentials     {"hashes": {"alice": "$argon2id$...", "alice+app-ID": ...}}
//
// for a peer only (its name and the shared token, or the tunnel). Over
// plain http (not the tunnel, not loopback) the answer is sent all the same,
// with a warning logged on both sides: the token that guards it crosses that
// link in the clear too, so refusing would only stop the logins there (a
// node lacking the hash its record names lets no one in with the old one).
// Use https or the tunnel between nodes. A node whose records name a hash it lacks (a password
// or app password set on another node) fetches every peer's, when a users/
// change lands and then every Retry (doubling up to Poll) until it has
// them, and keeps those its records name (store.AcceptPeerCredentials); a
// users/ change also drops the hashes that no record names any more (an
// app password revoked, a user deleted elsewhere). Node secrets (TLS key,
// tokens, signpost keys) have no such path.

// credentialsPath ends the credentials endpoint's URL path.
const credentialsPath = "/credentials"

// credentialsReply is the credentials endpoint's answer.
type credentialsReply struct {
	Hashes map[string]string `json:"hashes"`
}

// maxCredentialsReply bounds the answer a peer may send.
const maxCredentialsReply = 4 << 20

// serveCredentials answers a peer's GET BASE/credentials.
func (e *Engine) serveCredentials(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	name, tok, _ := r.BasicAuth()
	tunnel := e.tunnelPeer(r, name)
	if !checkToken(e.st, name, tok) && !tunnel {
		e.log.Warn("replica: refused a credentials request with a wrong peer name or token", "peer", name, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Basic realm="nymote replica"`)
		http.Error(w, "wrong peer name or token", http.StatusUnauthorized)
		return
	}
	if r.TLS == nil && !tunnel && !loopback(r.RemoteAddr) {
		e.log.Warn("replica: sending password hashes to a peer over plain http; use https or the tunnel", "peer", name, "remote", r.RemoteAddr)
	}
	m, err := e.st.PeerCredentials()
	if err != nil {
		e.log.Warn("replica: credentials", "err", err)
		http.Error(w, "credentials unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(credentialsReply{Hashes: m})
}

// loopback reports whether addr (host:port) is a loopback address.
func loopback(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// credentialsLoop keeps this node's hashes in step with its user records:
// see "Credentials" above.
func (e *Engine) credentialsLoop() {
	defer e.wg.Done()
	changed := make(chan struct{}, 1)
	if w, err := e.st.Watch("", store.UsersPrefix+"/"); err == nil {
		go func() {
			defer w.Close()
			for {
				if _, err := w.Next(e.ctx); err != nil {
					return
				}
				signal(changed)
			}
		}()
	} else {
		e.log.Warn("replica: credentials: watch", "err", err)
	}
	wait := e.opts.Retry
	prune := true
	for {
		want, err := e.st.CredentialsWanted()
		switch {
		case err != nil:
			e.log.Warn("replica: credentials", "err", err)
		case want:
			if e.fetchCredentials() {
				wait = e.opts.Retry
			} else {
				wait = min(2*wait, e.opts.Poll)
			}
			prune = false
		case prune:
			if _, err := e.st.AcceptPeerCredentials(e.ctx, nil); err != nil && e.ctx.Err() == nil {
				e.log.Warn("replica: credentials", "err", err)
			}
			prune = false
		}
		if !want {
			wait = e.opts.Poll
		}
		t := time.NewTimer(wait)
		select {
		case <-e.ctx.Done():
			t.Stop()
			return
		case <-changed:
			prune = true
			wait = e.opts.Retry
		case <-t.C:
		}
		t.Stop()
	}
}

// fetchCredentials asks every peer for its hashes and keeps those this
// node's records name. It reports whether it took any.
func (e *Engine) fetchCredentials() bool {
	e.mu.Lock()
	peers := make([]*peerSync, 0, len(e.peers))
	for _, p := range e.peers {
		peers = append(peers, p)
	}
	e.mu.Unlock()
	all := map[string]string{}
	for _, p := range peers {
		m, err := e.peerCredentials(p)
		if err != nil {
			if e.ctx.Err() == nil {
				e.log.Debug("replica: credentials from a peer", "peer", p.name, "err", err)
			}
			continue
		}
		for k, v := range m {
			all[k] = v
		}
	}
	if len(all) == 0 {
		return false
	}
	n, err := e.st.AcceptPeerCredentials(e.ctx, all)
	if err != nil {
		if e.ctx.Err() == nil {
			e.log.Warn("replica: credentials", "err", err)
		}
		return false
	}
	if n > 0 {
		e.log.Info("replica: took password hashes that the user records name from peers", "count", n)
	}
	return n > 0
}

// peerCredentials fetches peer p's hashes.
func (e *Engine) peerCredentials(p *peerSync) (map[string]string, error) {
	rem := p.remote()
	base := strings.TrimSuffix(rem.URL, "/git")
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" && rem.Dial == nil {
		ip, err := netip.ParseAddr(u.Hostname())
		if u.Hostname() != "localhost" && (err != nil || !ip.IsLoopback()) {
			e.log.Warn("replica: fetching password hashes from a peer over plain http; use https or the tunnel", "peer", p.name, "url", base)
		}
	}
	tr := &http.Transport{Proxy: nil, ForceAttemptHTTP2: true}
	if len(rem.CABundle) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pool.AppendCertsFromPEM(rem.CABundle)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if rem.Dial != nil {
		tr.DialContext = rem.Dial
	} else {
		tr.DialContext = (&net.Dialer{}).DialContext
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+credentialsPath, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(rem.Username, rem.Password)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s: %s: %s", base+credentialsPath, resp.Status, strings.TrimSpace(string(b)))
	}
	var rep credentialsReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxCredentialsReply)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("%s: %w", base+credentialsPath, err)
	}
	if rep.Hashes == nil {
		return nil, errors.New("credentials: no hashes in the answer")
	}
	return rep.Hashes, nil
}
