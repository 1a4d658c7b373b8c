// Package capability shares one collection of a DAV app (an address book,
// a calendar) with another person by a capability token: whoever presents
// the token gets the rights it names on the collection it names, until it
// expires or its owner revokes it, without an account on the owner's
// appliance.
//
// Tokens are macaroons (gopkg.in/macaroon.v2). A token is minted on the
// owner's node with a root key derived from the node's Ed25519 key and the
// token's random ID, and carries first-party caveats, each a condition
// that must hold:
//
//	collection /alice/work/       the request's path is in this collection
//	rights read | rights read,write
//	expires 2026-12-31T00:00:00Z
//
// Why macaroons: the one party that checks a token is the node that
// minted it (the owner's DAV app), which is exactly the setting macaroons
// are made for (an HMAC chain keyed by a secret only the verifier holds).
// Attenuation needs no key and no round trip: any holder appends a
// caveat, which can only narrow the token (every caveat must hold, so a
// holder who appends "rights read,write" to a read-only token gains
// nothing), and no caveat can be removed or changed without breaking the
// chain. The format is specified, small and has a maintained Go library
// the module proxy serves; Biscuit (public-key signatures, Datalog
// policies) would let third parties verify too, but its Go library is not
// served, and nothing here needs third-party verification. Revocation is
// by ID: the owner's node keeps the revoked IDs, and a token made by
// attenuating a revoked one carries the same ID.
//
// On the wire a token is TokenPrefix followed by the
// macaroon's binary form in unpadded base64url; clients present it as an
// HTTP bearer token, or as the password of HTTP basic authentication
// (any user name), which every CalDAV and CardDAV client can send.
package capability

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"gopkg.in/macaroon.v2"

	"github.com/nymote/nymote/signpost"
)

// TokenPrefix starts every token's text.
const TokenPrefix = "nymote-cap:"

// location is the macaroons' location hint.
const location = "nymote"

// Rights are what a token allows on its collection.
type Rights uint8

// The rights a token can grant.
const (
	Read  Rights = 1 << iota // GET, HEAD, PROPFIND, REPORT, OPTIONS
	Write                    // PUT, DELETE, PROPPATCH, MKCOL, COPY, MOVE
)

// String returns the rights as written in a caveat: "read", "read,write".
func (r Rights) String() string {
	var s []string
	if r&Read != 0 {
		s = append(s, "read")
	}
	if r&Write != 0 {
		s = append(s, "write")
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// ParseRights reads "read", "write", "read,write" (or "rw", "ro").
func ParseRights(s string) (Rights, error) {
	switch s {
	case "ro":
		return Read, nil
	case "rw":
		return Read | Write, nil
	}
	var r Rights
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "read":
			r |= Read
		case "write":
			r |= Write
		default:
			return 0, fmt.Errorf("capability: rights %q: want read, write or read,write", s)
		}
	}
	return r, nil
}

// ErrRefused is wrapped by every error of a token that does not allow a
// request: malformed, altered, expired, revoked, or too narrow.
var ErrRefused = errors.New("capability refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("capability: %w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// rootKey derives the root key of the token with ID id from the node's
// Ed25519 key: the node need keep no per-token secret.
func rootKey(id *signpost.Identity, tokenID []byte) []byte {
	m := hmac.New(sha256.New, id.Ed.Seed())
	m.Write([]byte("nymote capability root key\x00"))
	m.Write(tokenID)
	return m.Sum(nil)
}

// checkCollection checks a collection path: /USER/COLLECTION/.
func checkCollection(c string) (string, error) {
	if !strings.HasPrefix(c, "/") || strings.ContainsAny(c, " \t\r\n") || path.Clean(c) != strings.TrimSuffix(c, "/") {
		return "", fmt.Errorf("capability: collection %q: want a clean path such as /alice/work/", c)
	}
	if len(strings.Split(strings.Trim(c, "/"), "/")) < 2 {
		return "", fmt.Errorf("capability: collection %q: want /USER/COLLECTION/ (one collection, not a whole account)", c)
	}
	return strings.TrimSuffix(c, "/") + "/", nil
}

// Mint makes a token for the collection (a path such as /alice/work/) of
// the node whose data directory is dir, with rights until expiry.
func Mint(dir, collection string, rights Rights, expiry time.Time) (string, error) {
	col, err := checkCollection(collection)
	if err != nil {
		return "", err
	}
	if rights == 0 {
		return "", errors.New("capability: no rights")
	}
	id, err := signpost.LoadOrCreateIdentity(dir)
	if err != nil {
		return "", err
	}
	tokenID := make([]byte, 16)
	rand.Read(tokenID)
	m, err := macaroon.New(rootKey(id, tokenID), tokenID, location, macaroon.V2)
	if err != nil {
		return "", fmt.Errorf("capability: %w", err)
	}
	for _, c := range []string{"collection " + col, "rights " + rights.String(), "expires " + expiry.UTC().Format(time.RFC3339)} {
		if err := m.AddFirstPartyCaveat([]byte(c)); err != nil {
			return "", fmt.Errorf("capability: %w", err)
		}
	}
	return encode(m)
}

func encode(m *macaroon.Macaroon) (string, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return "", fmt.Errorf("capability: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

func decode(token string) (*macaroon.Macaroon, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(token), TokenPrefix)
	if !ok {
		return nil, refuse("malformed token: does not start with %q", TokenPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return nil, refuse("malformed token: not base64url: %v", err)
	}
	var m macaroon.Macaroon
	if err := m.UnmarshalBinary(b); err != nil {
		return nil, refuse("malformed token: %v", err)
	}
	if len(m.Id()) != 16 {
		return nil, refuse("malformed token: ID of %d bytes", len(m.Id()))
	}
	return &m, nil
}

// Attenuate returns a narrower token: the token with caveats added that
// limit it to rights (0: unchanged), to before expiry (zero: unchanged)
// and to collection (empty: unchanged; it must lie inside the token's).
// It needs no key: any holder can narrow a token before passing it on.
func Attenuate(token string, rights Rights, expiry time.Time, collection string) (string, error) {
	m, err := decode(token)
	if err != nil {
		return "", err
	}
	m = m.Clone()
	var cs []string
	if collection != "" {
		col, err := checkCollection(collection)
		if err != nil {
			return "", err
		}
		cs = append(cs, "collection "+col)
	}
	if rights != 0 {
		cs = append(cs, "rights "+rights.String())
	}
	if !expiry.IsZero() {
		cs = append(cs, "expires "+expiry.UTC().Format(time.RFC3339))
	}
	for _, c := range cs {
		if err := m.AddFirstPartyCaveat([]byte(c)); err != nil {
			return "", fmt.Errorf("capability: %w", err)
		}
	}
	return encode(m)
}

// Grant is what a verified token allows.
type Grant struct {
	ID          string    // the root token's ID, in hex
	Collections []string  // the request's path must be in every one
	Rights      Rights    // the intersection of the rights caveats
	Expiry      time.Time // the earliest expiry
}

// ID returns the ID of a token (the root token's, shared by every token
// made from it), for Revoke.
func ID(token string) (string, error) {
	m, err := decode(token)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(m.Id()), nil
}

// Verify checks a token against the node of data directory dir at time
// now: its chain of signatures from the node's root key, every caveat
// understood, not expired, not revoked. It returns what it grants.
func Verify(dir, token string, now time.Time) (*Grant, error) {
	m, err := decode(token)
	if err != nil {
		return nil, err
	}
	id, err := signpost.LoadIdentity(dir)
	if err != nil {
		return nil, err
	}
	st, err := signpost.ReadState(dir)
	if err != nil {
		return nil, err
	}
	g := &Grant{ID: hex.EncodeToString(m.Id()), Rights: Read | Write}
	if slices.Contains(st.RevokedTokens, g.ID) {
		return nil, refuse("token %s has been revoked", g.ID)
	}
	rights, expires := false, false
	check := func(c string) error {
		verb, arg, _ := strings.Cut(c, " ")
		switch verb {
		case "collection":
			col, err := checkCollection(arg)
			if err != nil {
				return err
			}
			g.Collections = append(g.Collections, col)
		case "rights":
			r, err := ParseRights(arg)
			if err != nil {
				return err
			}
			g.Rights &= r
			rights = true
		case "expires":
			t, err := time.Parse(time.RFC3339, arg)
			if err != nil {
				return fmt.Errorf("expiry %q: %v", arg, err)
			}
			if g.Expiry.IsZero() || t.Before(g.Expiry) {
				g.Expiry = t
			}
			expires = true
		default:
			return fmt.Errorf("unknown caveat %q", c)
		}
		return nil
	}
	if err := m.Verify(rootKey(id, m.Id()), check, nil); err != nil {
		return nil, refuse("%v (altered, or not minted by this node)", err)
	}
	if len(g.Collections) == 0 || !rights || !expires {
		return nil, refuse("a token must name a collection, rights and an expiry")
	}
	if !now.Before(g.Expiry) {
		return nil, refuse("token expired at %s", g.Expiry.Format(time.RFC3339))
	}
	return g, nil
}

// Revoke revokes the token (and every token made from it) on the node of
// data directory dir. It takes a token or its ID (hex).
func Revoke(dir, tokenOrID string) (string, error) {
	id := tokenOrID
	if strings.HasPrefix(tokenOrID, TokenPrefix) {
		var err error
		if id, err = ID(tokenOrID); err != nil {
			return "", err
		}
	} else if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
		return "", fmt.Errorf("capability: %q is neither a token nor a token ID", tokenOrID)
	}
	return id, signpost.UpdateState(dir, func(_ *signpost.Identity, s *signpost.State) error {
		if !slices.Contains(s.RevokedTokens, id) {
			s.RevokedTokens = append(s.RevokedTokens, id)
		}
		return nil
	})
}

// needs returns the right a method needs.
func needs(method string) Rights {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, "PROPFIND", "REPORT":
		return Read
	}
	return Write
}

// within reports whether the URL path p is the collection col or inside
// it.
func within(p, col string) bool {
	p = path.Clean("/" + p)
	return p+"/" == col || strings.HasPrefix(p, col)
}

// Allows checks a request's method and path (and a COPY or MOVE's
// Destination) against the grant.
func (g *Grant) Allows(r *http.Request) error {
	need := needs(r.Method)
	if g.Rights&need == 0 {
		return refuse("the token allows %s, not %s (%s)", g.Rights, need, r.Method)
	}
	paths := []string{r.URL.Path}
	if d := r.Header.Get("Destination"); d != "" {
		u, err := url.Parse(d)
		if err != nil {
			return refuse("bad Destination %q", d)
		}
		paths = append(paths, u.Path)
	}
	for _, p := range paths {
		for _, col := range g.Collections {
			if !within(p, col) {
				return refuse("%s is outside the token's collection %s", p, col)
			}
		}
	}
	return nil
}

// User returns the account that owns the grant's collections (the first
// path segment).
func (g *Grant) User() string {
	u, _, _ := strings.Cut(strings.TrimPrefix(g.Collections[0], "/"), "/")
	return u
}

// FromRequest returns the token a request carries: a bearer token, or the
// password of basic authentication when it is a token. ok is false when
// the request carries none (it may carry a user's password).
func FromRequest(r *http.Request) (token string, ok bool) {
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:]), true
	}
	if _, pass, ok := r.BasicAuth(); ok && strings.HasPrefix(pass, TokenPrefix) {
		return pass, true
	}
	return "", false
}

// Handler checks capability tokens in front of a DAV app's handler next,
// for the node of data directory dir. A request with a token is served by
// next as the collection's owner (asUser puts that on the request's
// context, as the app's handler reads it: dav.WithUser) if the token allows
// it, and refused with 403 and the reason otherwise (401 for a malformed
// or unverifiable one). A request without a token goes to next as it is
// (a user's own password).
func Handler(dir string, next http.Handler, asUser func(ctx context.Context, user string) context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := FromRequest(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		g, err := Verify(dir, token, time.Now())
		if err == nil {
			err = g.Allows(r)
		}
		if err != nil {
			code := http.StatusForbidden
			if !errors.Is(err, ErrRefused) {
				code = http.StatusInternalServerError
			}
			http.Error(w, err.Error(), code)
			return
		}
		r2 := r.WithContext(asUser(r.Context(), g.User()))
		r2.Header = r.Header.Clone()
		r2.Header.Del("Authorization")
		next.ServeHTTP(w, r2)
	})
}
