package dav

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/nymote/nymote/store"
)

// propReq is what a PROPFIND or REPORT asks for.
type propReq struct {
	all, names bool
	props      []*Node
	include    []*Node
}

// parsePropReq reads DAV:prop, DAV:allprop or DAV:propname from el's
// children; none of them means allprop.
func parsePropReq(el *Node) *propReq {
	pr := &propReq{}
	if el == nil {
		pr.all = true
		return pr
	}
	if p := el.Child(Name(NSDAV, "prop")); p != nil {
		pr.props = p.Children
		return pr
	}
	if el.Child(Name(NSDAV, "propname")) != nil {
		pr.names = true
		return pr
	}
	pr.all = true
	if inc := el.Child(Name(NSDAV, "include")); inc != nil {
		pr.include = inc.Children
	}
	return pr
}

// resource is something a PROPFIND or REPORT describes.
type resource struct {
	href string
	// live are the live properties allprop and propname show.
	live []xml.Name
	// get returns a live property's inner XML; ok false when the resource
	// has no such property.
	get func(n xml.Name, req *Node) (inner string, ok bool, err error)
	// dead loads the dead properties (nil: none).
	dead func() (map[string]string, error)
}

func (res *resource) write(ms *multistatus, pr *propReq) error {
	var dead map[string]string
	loadDead := func() error {
		if dead != nil || res.dead == nil {
			return nil
		}
		d, err := res.dead()
		if err != nil {
			return err
		}
		if d == nil {
			d = map[string]string{}
		}
		dead = d
		return nil
	}
	found := propstatGroup{status: http.StatusOK}
	missing := propstatGroup{status: http.StatusNotFound}
	switch {
	case pr.names:
		for _, n := range res.live {
			found.props = append(found.props, PropValue{Name: n})
		}
		if err := loadDead(); err != nil {
			return err
		}
		for k := range dead {
			found.props = append(found.props, PropValue{Name: parseDeadKey(k)})
		}
	case pr.all:
		for _, n := range res.live {
			v, ok, err := res.get(n, nil)
			if err != nil {
				return err
			}
			if ok {
				found.props = append(found.props, PropValue{n, v})
			}
		}
		if err := loadDead(); err != nil {
			return err
		}
		for k, v := range dead {
			found.props = append(found.props, PropValue{parseDeadKey(k), v})
		}
		for _, p := range pr.include {
			v, ok, err := res.get(p.Name, p)
			if err != nil {
				return err
			}
			if ok && !containsName(res.live, p.Name) {
				found.props = append(found.props, PropValue{p.Name, v})
			}
		}
	default:
		for _, p := range pr.props {
			v, ok, err := res.get(p.Name, p)
			if err != nil {
				return err
			}
			if !ok {
				if err := loadDead(); err != nil {
					return err
				}
				v, ok = dead[deadKey(p.Name)]
			}
			if ok {
				found.props = append(found.props, PropValue{p.Name, v})
			} else {
				missing.props = append(missing.props, PropValue{Name: p.Name})
			}
		}
	}
	if len(found.props) == 0 && len(missing.props) == 0 {
		// Every response has a propstat.
		found.props = append(found.props, PropValue{Name: Name(NSDAV, "resourcetype"), Inner: ""})
	}
	ms.response(res.href, found, missing)
	return ms.flush()
}

func containsName(ns []xml.Name, n xml.Name) bool {
	for _, x := range ns {
		if x == n {
			return true
		}
	}
	return false
}

var privileges = Elem(Name(NSDAV, "privilege"), Elem(Name(NSDAV, "all"), "")) +
	Elem(Name(NSDAV, "privilege"), Elem(Name(NSDAV, "read"), "")) +
	Elem(Name(NSDAV, "privilege"), Elem(Name(NSDAV, "write"), "")) +
	Elem(Name(NSDAV, "privilege"), Elem(Name(NSDAV, "write-properties"), "")) +
	Elem(Name(NSDAV, "privilege"), Elem(Name(NSDAV, "write-content"), "")) +
	Elem(Name(NSDAV, "privilege"), Elem(Name(NSDAV, "bind"), "")) +
	Elem(Name(NSDAV, "privilege"), Elem(Name(NSDAV, "unbind"), "")) +
	Elem(Name(NSDAV, "privilege"), Elem(Name(NSDAV, "read-current-user-privilege-set"), ""))

// SyncToken is the sync token of a commit.
func SyncToken(commit store.Hash) string { return syncTokenPrefix + commit.String() }

const syncTokenPrefix = "urn:x-nymote:sync:"

func (h *Handler) principalResource(user string, root bool) *resource {
	home := "/" + user + "/"
	href := home
	if root {
		href = "/"
	}
	live := []xml.Name{Name(NSDAV, "resourcetype"), Name(NSDAV, "current-user-principal"), Name(NSDAV, "displayname")}
	if !root {
		live = append(live, Name(NSDAV, "principal-URL"), h.prof.HomeSet, Name(NSDAV, "owner"), Name(NSDAV, "current-user-privilege-set"))
	}
	return &resource{href: href, live: live, get: func(n xml.Name, req *Node) (string, bool, error) {
		switch n {
		case Name(NSDAV, "resourcetype"):
			if root {
				return Elem(Name(NSDAV, "collection"), ""), true, nil
			}
			return Elem(Name(NSDAV, "collection"), "") + Elem(Name(NSDAV, "principal"), ""), true, nil
		case Name(NSDAV, "current-user-principal"):
			return Href(home), true, nil
		case Name(NSDAV, "displayname"):
			if root {
				return "nymote " + h.prof.Name, true, nil
			}
			return Text(user), true, nil
		}
		if root {
			return "", false, nil
		}
		switch n {
		case Name(NSDAV, "principal-URL"), Name(NSDAV, "owner"), h.prof.HomeSet:
			return Href(home), true, nil
		case Name(NSDAV, "current-user-privilege-set"):
			return privileges, true, nil
		case h.prof.UserAddressSet:
			// (Zero for a kind without one, which no request names.)
			return Href("mailto:" + user + "@localhost"), n.Local != "", nil
		case Name(NSDAV, "principal-collection-set"):
			return Href("/"), true, nil
		}
		return "", false, nil
	}}
}

func (h *Handler) collectionResource(sn reader, c *Collection) *resource {
	live := []xml.Name{Name(NSDAV, "resourcetype"), Name(NSDAV, "displayname"), h.prof.DescriptionProp, h.prof.ColorProp,
		Name(NSCS, "getctag"), Name(NSDAV, "sync-token"), Name(NSDAV, "supported-report-set"), Name(NSDAV, "owner"),
		Name(NSDAV, "current-user-privilege-set"), Name(NSDAV, "getetag")}
	kprops := h.kind.CollectionProps(c)
	for _, p := range kprops {
		live = append(live, p.Name)
	}
	return &resource{href: c.Href(), live: live, get: func(n xml.Name, req *Node) (string, bool, error) {
		switch n {
		case Name(NSDAV, "resourcetype"):
			rt := Elem(Name(NSDAV, "collection"), "")
			if c.Type != TypePlain {
				rt += Elem(h.prof.CollectionType, "")
			}
			return rt, true, nil
		case Name(NSDAV, "displayname"):
			return Text(c.DisplayName), c.DisplayName != "", nil
		case h.prof.DescriptionProp:
			return Text(c.Description), c.Description != "", nil
		case h.prof.ColorProp:
			return Text(c.Color), c.Color != "", nil
		case Name(NSCS, "getctag"), Name(NSDAV, "getetag"):
			tag, err := h.repo.collectionTag(sn, c)
			if err != nil {
				return "", false, err
			}
			if n == Name(NSDAV, "getetag") {
				return Text(`"` + tag.String() + `"`), true, nil
			}
			return Text(tag.String()), true, nil
		case Name(NSDAV, "sync-token"):
			return Text(SyncToken(sn.Commit())), true, nil
		case Name(NSDAV, "owner"), Name(NSDAV, "current-user-principal"):
			return Href("/" + c.User + "/"), true, nil
		case Name(NSDAV, "current-user-privilege-set"):
			return privileges, true, nil
		case Name(NSDAV, "supported-report-set"):
			reports := []xml.Name{Name(NSDAV, "sync-collection")}
			if c.Type != TypePlain {
				reports = append(reports, h.prof.Multiget)
				reports = append(reports, h.prof.Reports...)
			}
			var b strings.Builder
			for _, r := range reports {
				b.WriteString(Elem(Name(NSDAV, "supported-report"), Elem(Name(NSDAV, "report"), Elem(r, ""))))
			}
			return b.String(), true, nil
		}
		for _, p := range kprops {
			if p.Name == n {
				return p.Inner, true, nil
			}
		}
		return "", false, nil
	}, dead: func() (map[string]string, error) { return c.Dead, nil }}
}

// objectLive are an object's live properties.
var objectLive = []xml.Name{Name(NSDAV, "getetag"), Name(NSDAV, "getcontenttype"), Name(NSDAV, "resourcetype"), Name(NSDAV, "getcontentlength")}

// objectResource is o as a resource whose DataProp is rendered within ctx
// (from renderContext: the request's budget).
func (h *Handler) objectResource(ctx context.Context, sn reader, c *Collection, o *Object) *resource {
	return &resource{href: o.Href, live: objectLive, get: func(n xml.Name, req *Node) (string, bool, error) {
		switch n {
		case Name(NSDAV, "getetag"):
			return Text(o.ETagString()), true, nil
		case Name(NSDAV, "getcontenttype"):
			return Text(h.contentType(c, o.Name)), true, nil
		case Name(NSDAV, "resourcetype"):
			return "", true, nil
		case Name(NSDAV, "getcontentlength"):
			if err := h.repo.readObject(sn, c, o); err != nil {
				return "", false, err
			}
			return strconv.Itoa(len(o.Data)), true, nil
		case h.prof.DataProp:
			if c.Type == TypePlain {
				return "", false, nil
			}
			if err := h.repo.readObject(sn, c, o); err != nil {
				return "", false, err
			}
			s, err := h.renderData(ctx, c, o, req)
			return s, err == nil, err
		}
		return "", false, nil
	}, dead: func() (map[string]string, error) {
		data, err := sn.Read(propsPath(h.repo.collDir(c.User, c.Path), o.Name))
		if errors.Is(err, store.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		m := map[string]string{}
		return m, json.Unmarshal(data, &m)
	}}
}

func (h *Handler) serveRoot(w http.ResponseWriter, r *http.Request, user string) error {
	switch r.Method {
	case "PROPFIND":
		body, err := readXMLBody(w, r)
		if err != nil {
			return err
		}
		if body != nil && body.Name != Name(NSDAV, "propfind") {
			return Errorf(http.StatusBadRequest, errNoCond, "PROPFIND needs a <propfind> body")
		}
		pr := parsePropReq(body)
		ms := newMultistatus()
		if err := h.principalResource(user, true).write(ms, pr); err != nil {
			return err
		}
		if r.Header.Get("Depth") == "1" {
			if err := h.principalResource(user, false).write(ms, pr); err != nil {
				return err
			}
		}
		return writeMultistatus(w, ms)
	case http.MethodGet, http.MethodHead:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write([]byte("nymote " + h.prof.Name + ": your collections are under /" + user + "/\n"))
		}
		return nil
	}
	w.Header().Set("Allow", "OPTIONS, GET, HEAD, PROPFIND")
	return Errorf(http.StatusMethodNotAllowed, errNoCond, "%s not allowed on /", r.Method)
}

func (h *Handler) propfind(w http.ResponseWriter, r *http.Request, sn reader, t *target) (err error) {
	if t.missing {
		return notFound(t)
	}
	body, err := readXMLBody(w, r)
	if err != nil {
		return err
	}
	if body != nil && body.Name != Name(NSDAV, "propfind") {
		return Errorf(http.StatusBadRequest, errNoCond, "PROPFIND needs a <propfind> body")
	}
	pr := parsePropReq(body)
	// Depth infinity (or none) is answered as Depth 1: homes and
	// collections are at most two levels deep for clients.
	depth1 := r.Header.Get("Depth") != "0"
	ms := newStreamingMultistatus(w)
	defer ms.abortIfStarted(&err)
	rctx := h.renderContext(r.Context()) // one budget for the renderings
	switch {
	case t.isHome():
		if err := h.principalResource(t.user, false).write(ms, pr); err != nil {
			return err
		}
		if depth1 {
			colls, err := h.repo.listCollections(sn, t.user, "")
			if err != nil {
				return err
			}
			for _, c := range colls {
				if err := h.collectionResource(sn, c).write(ms, pr); err != nil {
					return err
				}
			}
		}
	case t.obj != nil:
		if err := h.objectResource(rctx, sn, t.coll, t.obj).write(ms, pr); err != nil {
			return err
		}
	default:
		c := t.coll
		if err := h.collectionResource(sn, c).write(ms, pr); err != nil {
			return err
		}
		if depth1 {
			if c.Type == TypePlain {
				colls, err := h.repo.listCollections(sn, t.user, c.Path)
				if err != nil {
					return err
				}
				for _, cc := range colls {
					if err := h.collectionResource(sn, cc).write(ms, pr); err != nil {
						return err
					}
				}
			}
			objs, err := h.repo.listObjects(sn, c)
			if err != nil {
				return err
			}
			ms.grow(len(objs))
			for _, o := range objs {
				if err := h.objectResource(rctx, scan(sn), c, o).write(ms, pr); err != nil {
					return err
				}
				o.Data = nil // written: a listing holds one object at a time
			}
		}
	}
	return writeMultistatus(w, ms)
}

// hrefPath turns a DAV:href (a path or a full URL) into a clean URL path.
func hrefPath(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if plainPath(s) {
		return s, true // what url.Parse and path.Clean would return
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", false
	}
	p := u.Path
	if p == "" {
		return "", false
	}
	return path.Clean(p), true
}

// plainPath reports whether s is an absolute URL path that url.Parse and
// path.Clean leave as it is: letters, digits and -._~@ only, between
// single slashes, no segment of dots, no trailing slash.
func plainPath(s string) bool {
	if len(s) < 2 || s[0] != '/' || s[len(s)-1] == '/' {
		return false
	}
	seg := 0 // start of the current segment
	for i := 1; i <= len(s); i++ {
		if i == len(s) || s[i] == '/' {
			switch s[seg+1 : i] {
			case "", ".", "..":
				return false
			}
			seg = i
			continue
		}
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '@') {
			return false
		}
	}
	return true
}
