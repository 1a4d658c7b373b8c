package dav

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/nymote/nymote/store"
)

// copyMove answers COPY and MOVE of an object within the user's home (to
// another name or collection); the object's dead properties go with it.
// Collections are not copied or moved (501).
func (h *Handler) copyMove(w http.ResponseWriter, r *http.Request, sn reader, t *target) error {
	if t.missing {
		return notFound(t)
	}
	if t.obj == nil {
		return Errorf(http.StatusNotImplemented, errNoCond, "%s of collections is not supported", r.Method)
	}
	du, err := url.Parse(r.Header.Get("Destination"))
	if err != nil || du.Path == "" {
		return Errorf(http.StatusBadRequest, errNoCond, "missing or malformed Destination header")
	}
	if du.Host != "" && du.Host != r.Host {
		return Errorf(http.StatusBadGateway, errNoCond, "destination %s is on another server", du.Host)
	}
	segs := splitPath(du.Path)
	if len(segs) < 2 || segs[0] != t.user {
		return Errorf(http.StatusForbidden, errNoCond, "destination %s is not in your home /%s/", du.Path, t.user)
	}
	for _, s := range segs[1:] {
		if !segOK(s) {
			return Errorf(http.StatusBadRequest, errNoCond, "invalid destination segment %q", s)
		}
	}
	dt, err := h.resolve(sn, t.user, segs[1:])
	if err != nil {
		return err
	}
	if dt.parentMissing || dt.coll == nil || dt.isCollection() {
		return Errorf(http.StatusConflict, errNoCond, "no collection to %s %s into", strings.ToLower(r.Method), du.Path)
	}
	src, dst := t.coll, dt.coll
	same := src.Href() == dst.Href() && t.name == dt.name
	if same {
		return Errorf(http.StatusForbidden, errNoCond, "source and destination are the same")
	}
	overwrite := r.Header.Get("Overwrite") != "F"
	if err := h.repo.readObject(sn, src, t.obj); err != nil {
		return err
	}
	data := t.obj.Data
	var uid string
	if dst.Type != TypePlain {
		if uid, err = h.kind.Validate(data, dst); err != nil {
			return err
		}
	}
	move := r.Method == "MOVE"
	srcDir, dstDir := h.repo.collDir(src.User, src.Path), h.repo.collDir(dst.User, dst.Path)
	created := false
	h.repo.wmu.Lock()
	defer h.repo.wmu.Unlock()
	_, err = h.st.Update(r.Context(), h.commitOpts(t.user, fmt.Sprintf("%s %s%s to %s%s", strings.ToLower(r.Method), src.Href(), t.name, dst.Href(), dt.name)), func(tx *store.Tx) error {
		base := h.views.at(tx.Base())
		cur, err := h.repo.statObject(base, dst, dt.name)
		if err != nil {
			return err
		}
		if cur != nil && !overwrite {
			return Errorf(http.StatusPreconditionFailed, errNoCond, "%s exists and Overwrite is F", du.Path)
		}
		created = cur == nil
		if dst.Type != TypePlain {
			idx, err := h.repo.uidIndexFor(base, dst, func(d []byte) string { u, _ := h.kind.Validate(d, dst); return u })
			if err != nil {
				return err
			}
			if other, ok := idx.byUID[uid]; ok && other != dt.name && !(move && src.Href() == dst.Href() && other == t.name) {
				return &Error{Status: http.StatusConflict, Cond: h.typePrecond("no-uid-conflict"), CondInner: Href(dst.Href() + other),
					Message: fmt.Sprintf("UID %q is already used by %s%s", uid, dst.Href(), other)}
			}
		}
		if err := tx.Put(objPath(dstDir, dt.name), data); err != nil {
			return err
		}
		props, err := tx.Get(propsPath(srcDir, t.name))
		switch {
		case err == nil:
			err = tx.Put(propsPath(dstDir, dt.name), props)
		case errors.Is(err, store.ErrNotExist):
			err = tx.Delete(propsPath(dstDir, dt.name))
		}
		if err != nil || !move {
			return err
		}
		if err := tx.Delete(objPath(srcDir, t.name)); err != nil {
			return err
		}
		return tx.Delete(propsPath(srcDir, t.name))
	})
	h.repo.dropIndex(src)
	h.repo.dropIndex(dst)
	if err != nil {
		return err
	}
	if created {
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}
