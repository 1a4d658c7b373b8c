package davapp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/signpost/capability"
)

// shareTokens puts capability tokens in front of the DAV handler: a
// request carrying a token minted by this node (`nymote share`) is served
// as the collection's owner within the token's collection and rights; any
// other request goes on to the handler's own password check.
func shareTokens(dir string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler { return capability.Handler(dir, h, dav.WithUser) }
}

// parseSubscriptions reads subscriptions to collections shared with this
// appliance: a comma-separated list of LOCAL=URL#TOKEN[#SHA256], where
// LOCAL is the local copy's path (/bob/alice-work/), URL the shared
// collection, TOKEN the capability token, and SHA256 the fingerprint of
// the remote's certificate (as its console prints it) for a self-signed
// one (without it the system's roots are trusted).
func parseSubscriptions(s string, kind dav.Kind) ([]*dav.Subscription, error) {
	var subs []*dav.Subscription
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		local, rest, ok := strings.Cut(item, "=")
		remote, tail, ok2 := strings.Cut(rest, "#")
		token, pin, _ := strings.Cut(tail, "#")
		segs := strings.Split(strings.Trim(local, "/"), "/")
		u, err := url.Parse(remote)
		if !ok || !ok2 || token == "" || len(segs) != 2 || !strings.HasPrefix(local, "/") || err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("subscription %q: want /USER/COLLECTION/=URL#TOKEN[#SHA256]", item)
		}
		sub := &dav.Subscription{Remote: remote, Token: token, Local: "/" + segs[0] + "/" + segs[1] + "/", Kind: kind}
		if pin != "" {
			want, err := hex.DecodeString(strings.ReplaceAll(pin, ":", ""))
			if err != nil || len(want) != sha256.Size {
				return nil, fmt.Errorf("subscription %q: the certificate fingerprint is not a SHA-256 in hex", item)
			}
			sub.Client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				InsecureSkipVerify: true, // checked by the pin below
				VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
					if len(raw) == 0 {
						return errors.New("no certificate")
					}
					if sum := sha256.Sum256(raw[0]); !bytes.Equal(sum[:], want) {
						return fmt.Errorf("certificate fingerprint %X is not the subscription's", sum)
					}
					return nil
				},
			}}}
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// subscriptionInterval is how often subscriptions sync.
const subscriptionInterval = time.Minute

// withSubscriptions returns a Wrap that puts capability tokens in front of
// the DAV handler (shareTokens) and starts the subscriptions' sync loops
// on the handler until ctx ends.
func withSubscriptions(ctx context.Context, dir string, subs []*dav.Subscription, log *slog.Logger) func(http.Handler) http.Handler {
	tokens := shareTokens(dir)
	return func(h http.Handler) http.Handler {
		for _, s := range subs {
			go s.Run(ctx, h, subscriptionInterval, log)
		}
		return readOnlyCopies(subs, tokens(h))
	}
}

// readOnlyCopies refuses writes from clients into the subscriptions' local
// copies (the sync writes to the handler directly, not through this):
// the remote is the truth, and a local edit would be lost at the next
// sync.
func readOnlyCopies(subs []*dav.Subscription, next http.Handler) http.Handler {
	if len(subs) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions, "PROPFIND", "REPORT":
		default:
			p := path.Clean("/"+r.URL.Path) + "/"
			dest := ""
			if d := r.Header.Get("Destination"); d != "" {
				if u, err := url.Parse(d); err == nil {
					dest = path.Clean("/"+u.Path) + "/"
				}
			}
			for _, s := range subs {
				if strings.HasPrefix(p, s.Local) || strings.HasPrefix(s.Local, p) || dest != "" && strings.HasPrefix(dest, s.Local) {
					http.Error(w, fmt.Sprintf("%s is a copy of a collection shared with this appliance (%s): read-only", s.Local, s.Remote), http.StatusForbidden)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
