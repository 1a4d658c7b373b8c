package dav

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/nymote/nymote/store"
)

var errNoCond = xml.Name{}

func notFound(t *target) error {
	return Errorf(http.StatusNotFound, errNoCond, "nothing at /%s/%s", t.user, strings.Join(t.segs, "/"))
}

// etagMatches reports whether a header's list of entity tags holds etag.
func etagMatches(header, etag string) bool {
	for _, s := range strings.Split(header, ",") {
		s = strings.TrimSpace(s)
		s = strings.TrimPrefix(s, "W/")
		if s == "*" || s == etag {
			return true
		}
	}
	return false
}

// checkConditions applies If-Match and If-None-Match to a write on a
// resource whose current state is cur (nil: absent).
func checkConditions(r *http.Request, cur *Object) error {
	if im := r.Header.Get("If-Match"); im != "" {
		if cur == nil {
			return Errorf(http.StatusPreconditionFailed, errNoCond, "If-Match: the resource does not exist")
		}
		if !etagMatches(im, cur.ETagString()) {
			return Errorf(http.StatusPreconditionFailed, errNoCond, "If-Match: the resource changed; its ETag is now %s", cur.ETagString())
		}
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && cur != nil {
		if etagMatches(inm, cur.ETagString()) {
			return Errorf(http.StatusPreconditionFailed, errNoCond, "If-None-Match: the resource exists (ETag %s)", cur.ETagString())
		}
	}
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, sn reader, t *target) error {
	if t.missing {
		return notFound(t)
	}
	if t.obj == nil {
		// A collection or home: a plain listing, for people with browsers.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return nil
		}
		if t.coll != nil {
			objs, err := h.repo.listObjects(sn, t.coll)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s (%d objects)\n", t.coll.Href(), len(objs))
		}
		return nil
	}
	etag := t.obj.ETagString()
	w.Header().Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if err := h.repo.readObject(sn, t.coll, t.obj); err != nil {
		return err
	}
	w.Header().Set("Content-Type", h.contentType(t.coll, t.obj.Name))
	w.Header().Set("Content-Length", strconv.Itoa(len(t.obj.Data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(t.obj.Data)
	}
	return nil
}

func (h *Handler) contentType(c *Collection, name string) string {
	if c.Type != TypePlain {
		return h.prof.MediaType + "; charset=utf-8"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

func (h *Handler) typePrecond(suffix string) xml.Name { return h.prof.precond(suffix) }

func (h *Handler) put(w http.ResponseWriter, r *http.Request, t *target) error {
	if t.parentMissing || t.coll == nil {
		return Errorf(http.StatusConflict, errNoCond, "no collection to put /%s/%s in: create it first", t.user, strings.Join(t.segs, "/"))
	}
	if t.isCollection() {
		return Errorf(http.StatusMethodNotAllowed, errNoCond, "%s is a collection", t.coll.Href())
	}
	c := t.coll
	name := t.name
	max := h.opts.MaxObjectSize
	if r.ContentLength > max {
		return &Error{Status: http.StatusRequestEntityTooLarge, Cond: h.typePrecond("max-resource-size"), Message: fmt.Sprintf("the object is %d bytes; the limit is %d", r.ContentLength, max)}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if mb := (*http.MaxBytesError)(nil); errors.As(err, &mb) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Cond: h.typePrecond("max-resource-size"), Message: fmt.Sprintf("the object is larger than the limit of %d bytes", max)}
	}
	if err != nil {
		return Errorf(http.StatusBadRequest, errNoCond, "reading the body: %v", err)
	}
	var uid string
	if c.Type != TypePlain {
		mt, err := mediaType(r)
		if err != nil {
			return err
		}
		if mt != "" && !h.prof.acceptsMediaType(mt) {
			return &Error{Status: http.StatusUnsupportedMediaType, Cond: h.typePrecond(h.prof.SupportedData),
				Message: fmt.Sprintf("this %s holds %s objects, not %s", c.Type, h.prof.MediaType, mt)}
		}
		uid, err = h.kind.Validate(data, c)
		if err != nil {
			return err
		}
	}
	dir := h.repo.collDir(c.User, c.Path)
	op := objPath(dir, name)
	blob := h.views.blobs.putData(data)
	var created bool
	var base *view
	var oldList *listing
	h.repo.wmu.Lock()
	defer h.repo.wmu.Unlock()
	head, err := h.st.Update(r.Context(), h.requestOpts(r, t.user, "put "+c.Href()+name), func(tx *store.Tx) error {
		base = h.views.at(tx.Base())
		if _, err := base.Read(dir + "/props.json"); err != nil {
			if errors.Is(err, store.ErrNotExist) {
				err = Errorf(http.StatusConflict, errNoCond, "the collection %s was deleted", c.Href())
			}
			return err
		}
		cur, err := h.repo.statObject(base, c, name)
		if err != nil {
			return err
		}
		if err := checkConditions(r, cur); err != nil {
			return err
		}
		created = cur == nil
		if created {
			if err := checkCollectionSize(base, c, dir); err != nil {
				return err
			}
		}
		if c.Type != TypePlain {
			idx, err := h.repo.uidIndexFor(base, c, func(d []byte) string { u, _ := h.kind.Validate(d, c); return u })
			if err != nil {
				return err
			}
			oldList = idx.list
			if other, ok := idx.byUID[uid]; ok && other != name {
				return &Error{Status: http.StatusConflict, Cond: h.typePrecond("no-uid-conflict"), CondInner: Href(c.Href() + other),
					Message: fmt.Sprintf("UID %q is already used by %s%s", uid, c.Href(), other)}
			}
		}
		return tx.Put(op, data)
	})
	if err != nil {
		return err
	}
	h.afterWrite(base, head, c, oldList, []store.Change{{Path: op, To: blob}}, name, uid)
	etag := `"` + blob.String() + `"`
	w.Header().Set("ETag", etag)
	if created {
		w.Header().Set("Location", c.Href()+name)
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}

// afterWrite moves the view to the commit head that this server made from
// the view base with changes, and the UID index of c with it (oldList is
// the objects folder's version the index was checked against; nil when
// the collection has none).
func (h *Handler) afterWrite(base *view, head store.Hash, c *Collection, oldList *listing, changes []store.Change, name, uid string) {
	nv := h.views.committed(base.commit, head, changes)
	if c.Type == TypePlain || oldList == nil {
		return
	}
	l, err := nv.list(h.repo.collDir(c.User, c.Path) + "/o")
	if err != nil {
		l = nil
	}
	h.repo.updateIndex(c, oldList, l, name, uid)
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request, t *target) error {
	if t.missing {
		return notFound(t)
	}
	if t.isHome() {
		return Errorf(http.StatusForbidden, errNoCond, "a home cannot be deleted")
	}
	h.repo.wmu.Lock()
	defer h.repo.wmu.Unlock()
	c := t.coll
	dir := h.repo.collDir(c.User, c.Path)
	if t.obj == nil {
		_, err := h.st.Update(r.Context(), h.requestOpts(r, t.user, "delete collection "+c.Href()), func(tx *store.Tx) error {
			ents, err := tx.List(dir)
			if err != nil {
				return err
			}
			if len(ents) == 0 {
				return notFound(t)
			}
			for _, e := range ents {
				if err := tx.Delete(e.Path); err != nil {
					return err
				}
			}
			return nil
		})
		h.repo.dropIndex(c)
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	name := t.name
	op, pp := objPath(dir, name), propsPath(dir, name)
	var base *view
	var oldList *listing
	head, err := h.st.Update(r.Context(), h.requestOpts(r, t.user, "delete "+c.Href()+name), func(tx *store.Tx) error {
		base = h.views.at(tx.Base())
		cur, err := h.repo.statObject(base, c, name)
		if err != nil {
			return err
		}
		if cur == nil {
			return notFound(t)
		}
		if err := checkConditions(r, cur); err != nil {
			return err
		}
		if oldList, err = base.list(dir + "/o"); err != nil {
			return err
		}
		if err := tx.Delete(op); err != nil {
			return err
		}
		return tx.Delete(pp)
	})
	if err != nil {
		return err
	}
	h.afterWrite(base, head, c, oldList, []store.Change{{Path: op}, {Path: pp}}, name, "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// putCollection writes a collection's props.json.
func (h *Handler) putCollection(tx *store.Tx, c *Collection) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return tx.Put(h.repo.collDir(c.User, c.Path)+"/props.json", append(data, '\n'))
}

// protectedProps cannot be set by PROPPATCH.
var protectedProps = map[xml.Name]bool{
	Name(NSDAV, "resourcetype"): true, Name(NSDAV, "getetag"): true, Name(NSDAV, "sync-token"): true,
	Name(NSCS, "getctag"): true, Name(NSDAV, "supported-report-set"): true,
	Name(NSDAV, "current-user-privilege-set"): true, Name(NSDAV, "owner"): true,
	Name(NSDAV, "current-user-principal"): true, Name(NSDAV, "getcontenttype"): true,
	Name(NSDAV, "getcontentlength"): true, Name(NSDAV, "getlastmodified"): true,
	Name(NSDAV, "lockdiscovery"): true, Name(NSDAV, "supportedlock"): true,
	Name(NSCardDAV, "supported-address-data"): true, Name(NSCalDAV, "supported-calendar-data"): true,
	Name(NSCardDAV, "max-resource-size"): true, Name(NSCalDAV, "max-resource-size"): true,
	Name(NSCardDAV, "addressbook-home-set"): true, Name(NSCalDAV, "calendar-home-set"): true,
	Name(NSDAV, "principal-URL"): true,
}

func deadKey(n xml.Name) string { return "{" + n.Space + "}" + n.Local }

func parseDeadKey(k string) xml.Name {
	if i := strings.IndexByte(k, '}'); strings.HasPrefix(k, "{") && i > 0 {
		return Name(k[1:i], k[i+1:])
	}
	return Name("", k)
}

// setCollectionProp applies one set (remove false) or remove of a property
// to a collection; the status says why it failed (0: done).
func (h *Handler) setCollectionProp(c *Collection, p *Node, remove, creating bool) (int, error) {
	switch p.Name {
	case Name(NSDAV, "displayname"):
		c.DisplayName = ""
		if !remove {
			c.DisplayName = strings.TrimSpace(p.Text)
		}
		return 0, nil
	case h.prof.DescriptionProp:
		c.Description = ""
		if !remove {
			c.Description = p.Text
		}
		return 0, nil
	case h.prof.ColorProp:
		c.Color = ""
		if !remove {
			c.Color = strings.TrimSpace(p.Text)
		}
		return 0, nil
	}
	if !remove {
		ok, err := h.kind.MkcolProp(c, p)
		if err != nil {
			return http.StatusForbidden, err
		}
		if ok {
			return 0, nil
		}
	}
	if protectedProps[p.Name] {
		return http.StatusForbidden, Errorf(http.StatusForbidden, Name(NSDAV, "cannot-modify-protected-property"), "%s is protected", p.Name.Local)
	}
	if remove {
		delete(c.Dead, deadKey(p.Name))
		return 0, nil
	}
	v, ok := p.InnerXML(MaxPropBytes)
	if !ok {
		return http.StatusInsufficientStorage, propTooLarge(p.Name)
	}
	if c.Dead == nil {
		c.Dead = map[string]string{}
	}
	c.Dead[deadKey(p.Name)] = v
	return 0, nil
}

// Limits of the properties clients set (PROPPATCH, MKCOL). Dead
// properties are kept beside an object, or in its collection's props.json,
// which every request on the collection reads; they are bounded as objects
// are (MaxObjectSize), and far below.
const (
	// MaxDeadProps is how many dead properties one resource may have.
	MaxDeadProps = 64
	// MaxPropBytes bounds what clients set on one resource, in bytes: the
	// names and values of its dead properties, and a collection's display
	// name, description and colour.
	MaxPropBytes = 64 << 10
)

func propTooLarge(n xml.Name) *Error {
	return Errorf(http.StatusInsufficientStorage, errNoCond, "the value of %s is larger than the limit of %d bytes for the properties of a resource", n.Local, MaxPropBytes)
}

// propSize measures properties against the limits: their count and
// their bytes (names and values).
func propSize(dead map[string]string, text ...string) (count, size int) {
	for k, v := range dead {
		size += len(k) + len(v)
	}
	for _, t := range text {
		size += len(t)
	}
	return len(dead), size
}

// collectionPropSize is propSize of a collection's client-set properties.
func collectionPropSize(c *Collection) (count, size int) {
	return propSize(c.Dead, c.DisplayName, c.Description, c.Color)
}

// checkPropLimits refuses a change of properties that leaves a resource
// over a limit and larger than it was (count0, size0: before), so that a
// resource over the limits can still shed properties.
func checkPropLimits(href string, count0, size0, count, size int) *Error {
	switch {
	case count > MaxDeadProps && count > count0:
		return Errorf(http.StatusInsufficientStorage, errNoCond, "%s would have %d dead properties; the limit is %d", href, count, MaxDeadProps)
	case size > MaxPropBytes && size > size0:
		return Errorf(http.StatusInsufficientStorage, errNoCond, "the properties of %s would take %d bytes; the limit is %d", href, size, MaxPropBytes)
	}
	return nil
}

func (h *Handler) mkcol(w http.ResponseWriter, r *http.Request, t *target) error {
	if !t.missing {
		w.Header().Set("Allow", h.allow())
		return Errorf(http.StatusMethodNotAllowed, errNoCond, "something exists at %s already", r.URL.Path)
	}
	if t.isHome() {
		return Errorf(http.StatusMethodNotAllowed, errNoCond, "the home exists already")
	}
	if t.parentMissing {
		return Errorf(http.StatusConflict, errNoCond, "the parent of %s does not exist", r.URL.Path)
	}
	if t.coll != nil && t.coll.Type != TypePlain {
		return Errorf(http.StatusForbidden, h.typePrecond(h.prof.CollectionLocationOK), "collections cannot be made inside the %s %s", t.coll.Type, t.coll.Href())
	}
	// own: the kind's own method (MKCALENDAR), which makes a collection
	// of its type; MKCOL makes a plain one unless its body says otherwise.
	own := r.Method != "MKCOL"
	if own && r.Method != h.prof.MakeMethod {
		w.Header().Set("Allow", h.allow())
		return Errorf(http.StatusMethodNotAllowed, errNoCond, "%s on a %s server (it has no such method)", r.Method, h.prof.Name)
	}
	body, err := readXMLBody(w, r)
	if err != nil {
		return err
	}
	c := &Collection{User: t.user, Path: strings.Join(t.segs, "/"), Created: time.Now().UTC()}
	if own {
		c.Type = h.prof.StoredType
		c.Components = h.prof.newComponents()
	}
	if body != nil {
		want := Name(NSDAV, "mkcol")
		if own {
			want = h.prof.MakeBody
		}
		if body.Name != want {
			return Errorf(http.StatusBadRequest, errNoCond, "request body <%s>; want <%s>", body.Name.Local, want.Local)
		}
		for _, set := range body.All(Name(NSDAV, "set")) {
			for _, prop := range set.All(Name(NSDAV, "prop")) {
				for _, p := range prop.Children {
					if p.Name == Name(NSDAV, "resourcetype") {
						if !own {
							c.Type = TypePlain
						}
						for _, rt := range p.Children {
							switch {
							case rt.Name == Name(NSDAV, "collection"):
							case rt.Name == h.prof.CollectionType:
								c.Type = h.prof.StoredType
								if c.Components == nil {
									c.Components = h.prof.newComponents()
								}
							default:
								return Errorf(http.StatusForbidden, Name(NSDAV, "valid-resourcetype"), "cannot make a collection of type %s here", rt.Name.Local)
							}
						}
						continue
					}
					if status, err := h.setCollectionProp(c, p, false, true); status != 0 {
						return err
					}
				}
			}
		}
	}
	n, size := collectionPropSize(c)
	if e := checkPropLimits(c.Href(), 0, 0, n, size); e != nil {
		return e
	}
	h.repo.wmu.Lock()
	defer h.repo.wmu.Unlock()
	dir := h.repo.collDir(c.User, c.Path)
	_, err = h.st.Update(r.Context(), h.requestOpts(r, t.user, "make collection "+c.Href()), func(tx *store.Tx) error {
		if ok, err := tx.Exists(dir + "/props.json"); err != nil || ok {
			if err == nil {
				err = Errorf(http.StatusMethodNotAllowed, errNoCond, "%s exists already", c.Href())
			}
			return err
		}
		return h.putCollection(tx, c)
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", c.Href())
	w.WriteHeader(http.StatusCreated)
	return nil
}

// propUpdate is one set or remove of a PROPPATCH, in document order.
type propUpdate struct {
	p      *Node
	remove bool
}

func (h *Handler) proppatch(w http.ResponseWriter, r *http.Request, t *target) error {
	if t.missing {
		return notFound(t)
	}
	if t.isHome() {
		return Errorf(http.StatusForbidden, Name(NSDAV, "cannot-modify-protected-property"), "the home's properties cannot be changed")
	}
	body, err := readXMLBody(w, r)
	if err != nil {
		return err
	}
	if body == nil || body.Name != Name(NSDAV, "propertyupdate") {
		return Errorf(http.StatusBadRequest, errNoCond, "PROPPATCH needs a <propertyupdate> body")
	}
	var ups []propUpdate
	for _, op := range body.Children {
		remove := op.Name == Name(NSDAV, "remove")
		if !remove && op.Name != Name(NSDAV, "set") {
			continue
		}
		for _, prop := range op.All(Name(NSDAV, "prop")) {
			for _, p := range prop.Children {
				ups = append(ups, propUpdate{p, remove})
			}
		}
	}
	c := t.coll
	dir := h.repo.collDir(c.User, c.Path)
	href := c.Href()
	if t.obj != nil {
		href += t.name
	}
	failed := map[int]bool{}
	refused := map[int]*Error{} // failed for another reason than protection
	h.repo.wmu.Lock()
	defer h.repo.wmu.Unlock()
	_, err = h.st.Update(r.Context(), h.requestOpts(r, t.user, "change properties of "+href), func(tx *store.Tx) error {
		if t.obj == nil {
			data, err := tx.Get(dir + "/props.json")
			if err != nil {
				return err
			}
			cur := &Collection{}
			if err := json.Unmarshal(data, cur); err != nil {
				return err
			}
			cur.User, cur.Path = c.User, c.Path
			count0, size0 := collectionPropSize(cur)
			for i, u := range ups {
				if status, err := h.setCollectionProp(cur, u.p, u.remove, false); status != 0 {
					failed[i] = true
					if de := (*Error)(nil); errors.As(err, &de) && de.Cond != Name(NSDAV, "cannot-modify-protected-property") {
						refused[i] = de
					}
				}
			}
			if len(failed) == 0 {
				count, size := collectionPropSize(cur)
				refuseSets(ups, failed, refused, checkPropLimits(href, count0, size0, count, size))
			}
			if len(failed) > 0 {
				return errPropPatchFailed
			}
			return h.putCollection(tx, cur)
		}
		pp := propsPath(dir, t.name)
		dead := map[string]string{}
		if data, err := tx.Get(pp); err == nil {
			if err := json.Unmarshal(data, &dead); err != nil {
				return err
			}
		} else if !errors.Is(err, store.ErrNotExist) {
			return err
		}
		count0, size0 := propSize(dead)
		for i, u := range ups {
			if protectedProps[u.p.Name] || u.p.Name == h.prof.DataProp {
				failed[i] = true
				continue
			}
			if u.remove {
				delete(dead, deadKey(u.p.Name))
				continue
			}
			v, ok := u.p.InnerXML(MaxPropBytes)
			if !ok {
				failed[i], refused[i] = true, propTooLarge(u.p.Name)
				continue
			}
			dead[deadKey(u.p.Name)] = v
		}
		if len(failed) == 0 {
			count, size := propSize(dead)
			refuseSets(ups, failed, refused, checkPropLimits(href, count0, size0, count, size))
		}
		if len(failed) > 0 {
			return errPropPatchFailed
		}
		if len(dead) == 0 {
			return tx.Delete(pp)
		}
		data, err := json.Marshal(dead)
		if err != nil {
			return err
		}
		return tx.Put(pp, data)
	})
	if err != nil && !errors.Is(err, errPropPatchFailed) {
		return err
	}
	ok := propstatGroup{status: http.StatusOK}
	forbidden := propstatGroup{status: http.StatusForbidden, errXML: Elem(Name(NSDAV, "cannot-modify-protected-property"), "")}
	dep := propstatGroup{status: http.StatusFailedDependency}
	var others []propstatGroup
	for i, u := range ups {
		pv := PropValue{Name: u.p.Name}
		switch {
		case refused[i] != nil:
			de := refused[i]
			g := propstatGroup{status: de.Status, props: []PropValue{pv}, desc: de.Message}
			if de.Cond.Local != "" {
				g.errXML = Elem(de.Cond, de.CondInner)
			}
			others = append(others, g)
		case failed[i]:
			forbidden.props = append(forbidden.props, pv)
		case len(failed) > 0:
			dep.props = append(dep.props, pv)
		default:
			ok.props = append(ok.props, pv)
		}
	}
	ms := newMultistatus()
	ms.response(href, append([]propstatGroup{ok, forbidden, dep}, others...)...)
	return writeMultistatus(w, ms)
}

var errPropPatchFailed = errors.New("proppatch failed")

// refuseSets marks every set of ups refused with err (when not nil): the
// update as a whole passed a limit.
func refuseSets(ups []propUpdate, failed map[int]bool, refused map[int]*Error, err *Error) {
	if err == nil {
		return
	}
	for i, u := range ups {
		if !u.remove {
			failed[i], refused[i] = true, err
		}
	}
}

// writeMultistatus sends ms: whole, or the rest of a streaming one.
func writeMultistatus(w http.ResponseWriter, ms *multistatus) error {
	b := ms.bytes()
	if ms.started {
		if ms.err != nil {
			return ms.err
		}
		_, err := w.Write(b)
		return err
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusMultiStatus)
	_, err := w.Write(b)
	return err
}
