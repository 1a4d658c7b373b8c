package dav

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/nymote/nymote/store"
)

// copyMove answers COPY and MOVE (RFC 4918 sections 9.8 and 9.9) of an
// object or a collection within the user's home. Objects keep their bytes
// (so their ETags) and dead properties; a collection is copied with its
// properties and, at Depth infinity (the default, and the only depth MOVE
// takes), every member and inner collection. An existing destination is
// replaced when Overwrite is T (the default; 204) and refused with 412 when
// it is F; a new one is 201. The whole operation is one store commit, so
// a failure leaves nothing half-done, and every sync token moves on.
//
// What the store layout allows: objects live in collections (a destination
// outside one is 409), collections in the home or in plain collections (a
// destination inside an address book or calendar is 403), and an object
// copied into an address book or calendar must be valid there and not
// clash with another object's UID (409).
func (h *Handler) copyMove(w http.ResponseWriter, r *http.Request, sn reader, t *target) error {
	if t.missing {
		return notFound(t)
	}
	if t.isHome() {
		return Errorf(http.StatusForbidden, errNoCond, "a home cannot be copied or moved")
	}
	move := r.Method == "MOVE"
	verb := strings.ToLower(r.Method)
	isColl := t.obj == nil
	deep, err := copyDepth(r, move, isColl)
	if err != nil {
		return err
	}
	overwrite, err := overwriteHeader(r)
	if err != nil {
		return err
	}
	dsegs, err := destination(r, t.user)
	if err != nil {
		return err
	}
	dpath := "/" + t.user + "/" + strings.Join(dsegs, "/")
	switch {
	case within(dsegs, t.segs) && len(dsegs) == len(t.segs):
		return Errorf(http.StatusForbidden, errNoCond, "the source and the destination are the same")
	case isColl && within(dsegs, t.segs):
		return Errorf(http.StatusForbidden, errNoCond, "cannot %s %s into itself (%s)", verb, t.coll.Href(), dpath)
	}
	var created bool
	var touched []string // collection folders whose UID indexes are stale
	h.repo.wmu.Lock()
	defer h.repo.wmu.Unlock()
	_, err = h.st.Update(r.Context(), h.requestOpts(r, t.user, fmt.Sprintf("%s /%s/%s to %s", verb, t.user, strings.Join(t.segs, "/"), dpath)), func(tx *store.Tx) error {
		// Plan against the transaction's base, so that nothing that
		// committed since the request began is overlooked.
		base := h.views.at(tx.Base())
		src, err := h.resolve(base, t.user, t.segs)
		if err != nil {
			return err
		}
		if src.missing || (src.obj == nil) != isColl {
			return notFound(t)
		}
		dst, err := h.resolve(base, t.user, dsegs)
		if err != nil {
			return err
		}
		if dst.parentMissing {
			return Errorf(http.StatusConflict, errNoCond, "the parent of %s does not exist", dpath)
		}
		var parent *Collection // nil: the home
		if len(dsegs) > 1 {
			if parent, err = h.repo.loadCollection(base, t.user, strings.Join(dsegs[:len(dsegs)-1], "/")); err != nil {
				return err
			}
			if parent == nil {
				return Errorf(http.StatusConflict, errNoCond, "the parent of %s is not a collection", dpath)
			}
		}
		name := dsegs[len(dsegs)-1]
		switch {
		case !isColl && parent == nil:
			return Errorf(http.StatusConflict, errNoCond, "objects live in collections; %s is not in one", dpath)
		case isColl && parent != nil && parent.Type != TypePlain:
			return Errorf(http.StatusForbidden, h.typePrecond(h.prof.CollectionLocationOK), "collections cannot be made inside the %s %s", parent.Type, parent.Href())
		}
		dstIsColl := dst.isCollection()
		exists := !dst.missing && (dst.obj != nil || dstIsColl)
		if exists && !overwrite {
			return Errorf(http.StatusPreconditionFailed, errNoCond, "%s exists and Overwrite is F", dpath)
		}
		if exists && dstIsColl && within(t.segs, dsegs) {
			return Errorf(http.StatusForbidden, errNoCond, "cannot overwrite %s: it holds the source", dpath)
		}
		created = !exists
		// Clear the destination, as if by DELETE.
		switch {
		case dst.obj != nil:
			dir := h.repo.collDir(parent.User, parent.Path)
			if err := deleteAll(tx, objPath(dir, name), propsPath(dir, name)); err != nil {
				return err
			}
			touched = append(touched, dir)
		case dstIsColl:
			if err := deleteTree(tx, h.repo.collDir(t.user, dst.coll.Path)); err != nil {
				return err
			}
			touched = append(touched, h.repo.collDir(t.user, dst.coll.Path))
		}
		if isColl {
			from, to := h.repo.collDir(t.user, src.coll.Path), h.repo.collDir(t.user, strings.Join(dsegs, "/"))
			touched = append(touched, from, to)
			if deep {
				n, err := countItems(base, from, MaxCopyItems)
				if err != nil {
					return err
				}
				if n > MaxCopyItems {
					return Errorf(http.StatusInsufficientStorage, errNoCond, "%s holds more than %d items (objects, their properties and collections); the limit for one %s is %d: %s its collections one by one", t.coll.Href(), MaxCopyItems, verb, MaxCopyItems, verb)
				}
			}
			if err := r.Context().Err(); err != nil {
				return err
			}
			if err := copyTree(tx, from, to, deep); err != nil {
				return err
			}
			if move {
				return deleteTree(tx, from)
			}
			return nil
		}
		sc := src.coll
		if err := h.checkObjectCopy(base, src, parent, name, move); err != nil {
			return err
		}
		sdir, ddir := h.repo.collDir(sc.User, sc.Path), h.repo.collDir(parent.User, parent.Path)
		if dst.obj == nil && (sdir != ddir || !move) {
			if err := checkCollectionSize(base, parent, ddir); err != nil {
				return err
			}
		}
		touched = append(touched, sdir, ddir)
		if err := copyFile(tx, objPath(sdir, src.name), objPath(ddir, name)); err != nil {
			return err
		}
		if err := copyFile(tx, propsPath(sdir, src.name), propsPath(ddir, name)); err != nil {
			return err
		}
		if move {
			return deleteAll(tx, objPath(sdir, src.name), propsPath(sdir, src.name))
		}
		return nil
	})
	h.repo.dropIndexes(touched)
	if err != nil {
		return err
	}
	if created {
		w.Header().Set("Location", escapePath(dpath))
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}

// checkObjectCopy checks that the object src may be stored as name in the
// collection dst: valid there, and no other object with its UID.
func (h *Handler) checkObjectCopy(base *view, src *target, dst *Collection, name string, move bool) error {
	if dst.Type == TypePlain {
		return nil
	}
	if err := h.repo.readObject(base, src.coll, src.obj); err != nil {
		return err
	}
	uid, err := h.kind.Validate(src.obj.Data, dst)
	if err != nil {
		return err
	}
	idx, err := h.repo.uidIndexFor(base, dst, func(d []byte) string { u, _ := h.kind.Validate(d, dst); return u })
	if err != nil {
		return err
	}
	other, ok := idx.byUID[uid]
	if !ok || other == name || move && src.coll.Href() == dst.Href() && other == src.name {
		return nil
	}
	return &Error{Status: http.StatusConflict, Cond: h.typePrecond("no-uid-conflict"), CondInner: Href(dst.Href() + other),
		Message: fmt.Sprintf("UID %q is already used by %s%s", uid, dst.Href(), other)}
}

// copyDepth reads the Depth header of a COPY or MOVE: whether members go
// with a collection. MOVE of a collection is always Depth infinity.
func copyDepth(r *http.Request, move, isColl bool) (deep bool, err error) {
	switch d := strings.TrimSpace(r.Header.Get("Depth")); {
	case d == "" || strings.EqualFold(d, "infinity"):
		return true, nil
	case d == "0" && !move:
		return false, nil
	case !isColl && (d == "0" || d == "1"):
		return true, nil
	case move:
		return false, Errorf(http.StatusBadRequest, errNoCond, "Depth %q: MOVE of a collection takes Depth infinity", d)
	default:
		return false, Errorf(http.StatusBadRequest, errNoCond, "Depth %q: COPY of a collection takes Depth 0 or infinity", d)
	}
}

// overwriteHeader reads the Overwrite header (T when absent).
func overwriteHeader(r *http.Request) (bool, error) {
	switch o := strings.TrimSpace(r.Header.Get("Overwrite")); o {
	case "", "T", "t":
		return true, nil
	case "F", "f":
		return false, nil
	default:
		return false, Errorf(http.StatusBadRequest, errNoCond, "Overwrite %q: want T or F", o)
	}
}

// destination reads the Destination header: the path segments after the
// user's name, which must be in the user's home.
func destination(r *http.Request, user string) ([]string, error) {
	d := r.Header.Get("Destination")
	du, err := url.Parse(d)
	if err != nil || du.Path == "" {
		return nil, Errorf(http.StatusBadRequest, errNoCond, "missing or malformed Destination header %q", d)
	}
	if du.Host != "" && du.Host != r.Host {
		return nil, Errorf(http.StatusBadGateway, errNoCond, "destination %s is on another server", du.Host)
	}
	segs := splitPath(du.Path)
	if len(segs) < 2 || segs[0] != user {
		return nil, Errorf(http.StatusForbidden, errNoCond, "destination %s is not in your home /%s/", du.Path, user)
	}
	for _, s := range segs[1:] {
		if !segOK(s) {
			return nil, Errorf(http.StatusBadRequest, errNoCond, "invalid destination segment %q", s)
		}
	}
	return segs[1:], nil
}

// within reports whether path segs is inside (or equal to) path dir.
func within(segs, dir []string) bool {
	if len(segs) < len(dir) {
		return false
	}
	for i, s := range dir {
		if segs[i] != s {
			return false
		}
	}
	return true
}

// Limits of COPY and MOVE. A copy is one commit, made by blob hash (no
// object is read), but it still costs an entry per item in memory and in
// the new trees, and a copy of a copy doubles what a user holds: so one
// COPY or MOVE of a collection takes at most MaxCopyItems items, and a
// collection holds at most MaxCollectionObjects objects (PUT, COPY and
// MOVE refuse more with 507).
const (
	// MaxCopyItems is how many store items (objects, their dead
	// properties, collections) one COPY or MOVE of a collection may take.
	MaxCopyItems = 10_000
	// MaxCollectionObjects is how many objects a collection may hold.
	MaxCollectionObjects = 100_000
)

// countItems counts the store items in the collection folder dir and the
// collections inside it, stopping once the count passes limit.
func countItems(v *view, dir string, limit int) (int, error) {
	n := 1 // props.json
	for _, sub := range []string{"/o", "/p"} {
		l, err := v.list(dir + sub)
		if err != nil {
			return 0, err
		}
		n += len(l.m)
	}
	ents, err := v.ReadDir(dir + "/c")
	if err != nil && !errors.Is(err, store.ErrNotExist) {
		return 0, err
	}
	for _, e := range ents {
		if n > limit {
			break
		}
		if !e.Dir {
			continue
		}
		m, err := countItems(v, e.Path, limit-n)
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}

// checkCollectionSize refuses a new object in collection c (folder dir)
// when it holds MaxCollectionObjects already.
func checkCollectionSize(v *view, c *Collection, dir string) error {
	l, err := v.list(dir + "/o")
	if err != nil {
		return err
	}
	if len(l.m) >= MaxCollectionObjects {
		return &Error{Status: http.StatusInsufficientStorage, Cond: Name(NSDAV, "quota-not-exceeded"),
			Message: fmt.Sprintf("%s holds %d objects, the limit for a collection", c.Href(), len(l.m))}
	}
	return nil
}

// copyTree copies a collection folder by blob hash: with deep, everything
// in it (members, their properties, inner collections); otherwise only its
// properties.
func copyTree(tx *store.Tx, from, to string, deep bool) error {
	if !deep {
		return copyFile(tx, from+"/props.json", to+"/props.json")
	}
	_, err := tx.Copy(from, to)
	return err
}

// copyFile copies one store item by blob hash (deleting the target when
// there is none).
func copyFile(tx *store.Tx, from, to string) error {
	n, err := tx.Copy(from, to)
	if err != nil {
		return err
	}
	if n == 0 {
		return tx.Delete(to)
	}
	return nil
}

// deleteTree deletes everything under dir.
func deleteTree(tx *store.Tx, dir string) error {
	ents, err := tx.List(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := tx.Delete(e.Path); err != nil {
			return err
		}
	}
	return nil
}

func deleteAll(tx *store.Tx, paths ...string) error {
	for _, p := range paths {
		if err := tx.Delete(p); err != nil {
			return err
		}
	}
	return nil
}
