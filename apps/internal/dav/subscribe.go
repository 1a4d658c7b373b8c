package dav

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"time"
)

// Subscription keeps a copy of a collection shared with this appliance's
// user by a capability token (signpost/capability) on another appliance:
// the recipient's side of sharing. Each Sync lists the remote collection
// (PROPFIND, Depth 1, with the token as a bearer token), fetches the
// objects whose ETag changed since the last sync, writes them into the
// local collection through the local Handler (as the local collection's
// owner, see WithUser), and deletes local objects gone from the remote. The
// local collection is created on first sync. It is a copy: the remote is
// the truth, and local edits are overwritten or deleted by the next Sync.
type Subscription struct {
	// Remote is the URL of the shared collection, such as
	// https://alice.example/alice/work/.
	Remote string
	// Token is the capability token.
	Token string
	// Local is the path of the local copy, /USER/COLLECTION/.
	Local string
	// Client does the remote requests (nil: http.DefaultClient).
	Client *http.Client
	// Kind is the local collection's kind, which says how to create it.
	Kind Kind

	seen map[string]string // remote object name: remote ETag last copied
}

type msProp struct {
	ETag       string `xml:"getetag"`
	Collection *struct {
	} `xml:"resourcetype>collection"`
}

type subMultistatus struct {
	Responses []struct {
		Href     string `xml:"href"`
		Propstat []struct {
			Prop   msProp `xml:"prop"`
			Status string `xml:"status"`
		} `xml:"propstat"`
	} `xml:"response"`
}

const propfindETags = `<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:resourcetype/></d:prop></d:propfind>`

// members parses a Depth 1 PROPFIND answer into the collection's objects
// (last path segment) and their ETags.
func members(body []byte) (map[string]string, error) {
	var ms subMultistatus
	if err := xml.Unmarshal(body, &ms); err != nil {
		return nil, fmt.Errorf("dav: subscription: bad multistatus: %v", err)
	}
	out := map[string]string{}
	for _, r := range ms.Responses {
		u, err := url.Parse(r.Href)
		if err != nil {
			continue
		}
		name := path.Base(u.Path)
		for _, ps := range r.Propstat {
			if strings.Contains(ps.Status, " 200 ") && ps.Prop.Collection == nil && ps.Prop.ETag != "" && segOK(name) {
				out[name] = ps.Prop.ETag
			}
		}
	}
	return out, nil
}

func (s *Subscription) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return http.DefaultClient
}

func (s *Subscription) remote(ctx context.Context, method, name string, body []byte, headers ...string) (*http.Response, []byte, error) {
	u := strings.TrimSuffix(s.Remote, "/") + "/" + name
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := s.client().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp, b, err
}

// local sends a request to the local handler as the local collection's
// owner.
func (s *Subscription) local(ctx context.Context, h http.Handler, method, name string, body []byte, headers ...string) *httptest.ResponseRecorder {
	owner, _, _ := strings.Cut(strings.Trim(s.Local, "/"), "/")
	req := httptest.NewRequestWithContext(WithUser(ctx, owner), method, strings.TrimSuffix(s.Local, "/")+"/"+name, bytes.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// Sync brings the local copy up to date with the remote collection
// through the local handler h, and returns how many objects it wrote and
// deleted.
func (s *Subscription) Sync(ctx context.Context, h http.Handler) (written, deleted int, err error) {
	if s.seen == nil {
		s.seen = map[string]string{}
	}
	resp, body, err := s.remote(ctx, "PROPFIND", "", []byte(propfindETags), "Depth", "1", "Content-Type", "application/xml")
	if err != nil {
		return 0, 0, fmt.Errorf("dav: subscription %s: %w", s.Remote, err)
	}
	if resp.StatusCode != http.StatusMultiStatus {
		return 0, 0, fmt.Errorf("dav: subscription %s: PROPFIND: %s: %s", s.Remote, resp.Status, bytes.TrimSpace(body))
	}
	remote, err := members(body)
	if err != nil {
		return 0, 0, err
	}
	lw := s.local(ctx, h, "PROPFIND", "", []byte(propfindETags), "Depth", "1", "Content-Type", "application/xml")
	if lw.Code == http.StatusNotFound {
		method, body := makeRequest(s.Kind.Profile())
		if mk := s.local(ctx, h, method, "", body, "Content-Type", "application/xml"); mk.Code != http.StatusCreated {
			return 0, 0, fmt.Errorf("dav: subscription: create %s: %d %s", s.Local, mk.Code, bytes.TrimSpace(mk.Body.Bytes()))
		}
		lw = s.local(ctx, h, "PROPFIND", "", []byte(propfindETags), "Depth", "1", "Content-Type", "application/xml")
	}
	if lw.Code != http.StatusMultiStatus {
		return 0, 0, fmt.Errorf("dav: subscription: list %s: %d %s", s.Local, lw.Code, bytes.TrimSpace(lw.Body.Bytes()))
	}
	local, err := members(lw.Body.Bytes())
	if err != nil {
		return 0, 0, err
	}
	for name, etag := range remote {
		if _, ok := local[name]; ok && s.seen[name] == etag {
			continue
		}
		resp, obj, err := s.remote(ctx, http.MethodGet, name, nil)
		if err != nil {
			return written, deleted, fmt.Errorf("dav: subscription %s: GET %s: %w", s.Remote, name, err)
		}
		if resp.StatusCode != http.StatusOK {
			return written, deleted, fmt.Errorf("dav: subscription %s: GET %s: %s", s.Remote, name, resp.Status)
		}
		pw := s.local(ctx, h, http.MethodPut, name, obj, "Content-Type", resp.Header.Get("Content-Type"))
		if pw.Code != http.StatusCreated && pw.Code != http.StatusNoContent && pw.Code != http.StatusOK {
			return written, deleted, fmt.Errorf("dav: subscription: write %s%s: %d %s", s.Local, name, pw.Code, bytes.TrimSpace(pw.Body.Bytes()))
		}
		s.seen[name] = etag
		written++
	}
	for name := range local {
		if _, ok := remote[name]; ok {
			continue
		}
		dw := s.local(ctx, h, http.MethodDelete, name, nil)
		if dw.Code != http.StatusNoContent && dw.Code != http.StatusOK && dw.Code != http.StatusNotFound {
			return written, deleted, fmt.Errorf("dav: subscription: delete %s%s: %d", s.Local, name, dw.Code)
		}
		delete(s.seen, name)
		deleted++
	}
	return written, deleted, nil
}

// makeRequest returns the method and body that make a collection of the
// kind: its own method (MKCALENDAR) with no body, or an extended MKCOL
// (RFC 5689) naming the kind's collection type.
func makeRequest(p *Profile) (string, []byte) {
	if p.MakeMethod != "" {
		return p.MakeMethod, nil
	}
	t := p.CollectionType
	return "MKCOL", []byte(`<?xml version="1.0" encoding="utf-8"?><d:mkcol xmlns:d="DAV:"><d:set><d:prop><d:resourcetype><d:collection/><x:` +
		t.Local + ` xmlns:x="` + t.Space + `"/></d:resourcetype></d:prop></d:set></d:mkcol>`)
}

// Run syncs every interval until ctx ends, logging each sync that changed
// something and each failure.
func (s *Subscription) Run(ctx context.Context, h http.Handler, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		w, d, err := s.Sync(ctx, h)
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			log.Warn("subscription sync failed", "local", s.Local, "remote", s.Remote, "err", err)
		case w+d > 0:
			log.Info("subscription synced", "local", s.Local, "remote", s.Remote, "written", w, "deleted", d)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
