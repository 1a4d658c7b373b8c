package dav

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/nymote/nymote/store"
)

func (h *Handler) report(w http.ResponseWriter, r *http.Request, sn reader, t *target) (err error) {
	if t.missing {
		return notFound(t)
	}
	body, err := readXMLBody(w, r)
	if err != nil {
		return err
	}
	if body == nil {
		return Errorf(http.StatusBadRequest, errNoCond, "REPORT needs a body")
	}
	if t.isHome() || t.obj != nil {
		return Errorf(http.StatusForbidden, Name(NSDAV, "supported-report"), "REPORT %s is answered on a collection, not on %s", body.Name.Local, r.URL.Path)
	}
	c := t.coll
	pr := parsePropReq(body)
	if pr.all && body.Child(Name(NSDAV, "allprop")) == nil {
		// No DAV:prop: the ETag is what clients need.
		pr = &propReq{props: []*Node{{Name: Name(NSDAV, "getetag")}}}
	}
	ms := newStreamingMultistatus(w)
	defer ms.abortIfStarted(&err)
	// One budget for the whole REPORT's renderings (calendar-data with
	// expand), ended with the request (see ContextRenderer).
	rctx := h.renderContext(r.Context())
	respond := func(objs []*Object) error {
		for _, o := range objs {
			if err := h.objectResource(rctx, sn, c, o).write(ms, pr); err != nil {
				return err
			}
		}
		return writeMultistatus(w, ms)
	}
	switch body.Name {
	case Name(NSDAV, "sync-collection"):
		return h.syncCollection(rctx, w, ms, sn, c, body, pr)
	case h.prof.Multiget:
		// Each object is answered once, however often it is asked for:
		// the response is at most the collection.
		hrs := body.All(Name(NSDAV, "href"))
		seen := make(map[string]bool, len(hrs))
		stat := h.repo.statter(sn, c)
		base := c.Href()
		ms.grow(len(hrs))
		for _, hr := range hrs {
			if err := ms.flush(); err != nil {
				return err
			}
			p, ok := hrefPath(hr.Text)
			if !ok {
				ms.statusResponse(hr.Text, http.StatusBadRequest)
				continue
			}
			if seen[p] {
				continue
			}
			seen[p] = true
			dir, name := p[:strings.LastIndexByte(p, '/')+1], p[strings.LastIndexByte(p, '/')+1:]
			if dir != base || !segOK(name) {
				ms.statusResponse(p, http.StatusNotFound)
				continue
			}
			o, err := stat(name, p)
			if err != nil {
				return err
			}
			if o == nil {
				ms.statusResponse(p, http.StatusNotFound)
				continue
			}
			if err := h.objectResource(rctx, sn, c, o).write(ms, pr); err != nil {
				return err
			}
		}
		return writeMultistatus(w, ms)
	}
	if c.Type != TypePlain {
		handled, err := h.kind.Report(rctx, &ReportRequest{
			Body:       body,
			Collection: c,
			Objects: func() ([]*Object, error) {
				objs, err := h.repo.listObjects(sn, c)
				if err != nil {
					return nil, err
				}
				for _, o := range objs {
					if err := h.repo.readObject(sn, c, o); err != nil {
						return nil, err
					}
				}
				return objs, nil
			},
			Respond: respond,
			W:       w,
		})
		if handled || err != nil {
			return err
		}
	}
	return Errorf(http.StatusForbidden, Name(NSDAV, "supported-report"), "REPORT %s is not supported on %s", body.Name.Local, c.Href())
}

// syncCollection answers an RFC 6578 sync-collection REPORT. A sync token
// names a store commit; the changes since then are the difference between
// the collection's objects in that commit and now.
func (h *Handler) syncCollection(rctx context.Context, w http.ResponseWriter, ms *multistatus, sn reader, c *Collection, body *Node, pr *propReq) error {
	if lvl := strings.TrimSpace(body.Child(Name(NSDAV, "sync-level")).textOr("1")); lvl != "1" && lvl != "infinite" {
		return Errorf(http.StatusBadRequest, errNoCond, "sync-level %q; want 1", lvl)
	}
	tok := strings.TrimSpace(body.Child(Name(NSDAV, "sync-token")).textOr(""))
	if tok == "" {
		now, err := h.repo.listObjects(sn, c)
		if err != nil {
			return err
		}
		ms.grow(len(now))
		for _, o := range now {
			if err := h.objectResource(rctx, scan(sn), c, o).write(ms, pr); err != nil {
				return err
			}
			o.Data = nil // written: a listing holds one object at a time
		}
	} else {
		prefix := h.repo.collDir(c.User, c.Path) + "/o"
		changes, err := h.changesSince(tok, sn.Commit(), prefix)
		if err != nil {
			return err
		}
		for _, ch := range changes {
			if err := ms.flush(); err != nil {
				return err
			}
			name := store.Unshard(ch.Path)
			if ch.To.IsZero() {
				ms.statusResponse(c.Href()+name, http.StatusNotFound)
				continue
			}
			o := &Object{Name: name, Href: c.Href() + name, ETag: ch.To}
			if err := h.objectResource(rctx, sn, c, o).write(ms, pr); err != nil {
				return err
			}
		}
	}
	ms.raw(Elem(Name(NSDAV, "sync-token"), Text(SyncToken(sn.Commit()))))
	return writeMultistatus(w, ms)
}

// changesSince lists what changed under the folder prefix between the
// commit a sync token names and head (store.DiffUnder follows the size of
// the change, not of the collection). An unknown token is the
// DAV:valid-sync-token precondition.
func (h *Handler) changesSince(tok string, head store.Hash, prefix string) ([]store.Change, error) {
	bad := Errorf(http.StatusForbidden, Name(NSDAV, "valid-sync-token"), "unknown sync token %q: sync again from scratch", tok)
	hx, ok := strings.CutPrefix(tok, syncTokenPrefix)
	if !ok || strings.ToLower(hx) != hx {
		return nil, bad
	}
	from, err := hexHash(hx)
	if err != nil {
		return nil, bad
	}
	changes, err := h.st.DiffUnder(from, head, prefix)
	if err != nil {
		return nil, bad
	}
	return changes, nil
}

// hexHash parses a full hexadecimal commit hash.
func hexHash(s string) (store.Hash, error) {
	var h store.Hash
	if _, err := hex.Decode(h[:], []byte(s)); err != nil || len(s) != 2*len(h) {
		return h, fmt.Errorf("bad hash %q", s)
	}
	return h, nil
}

func (n *Node) textOr(def string) string {
	if n == nil {
		return def
	}
	return n.Text
}
