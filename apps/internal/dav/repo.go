package dav

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nymote/nymote/store"
)

// Storage layout, under the kind's prefix (contacts/ or calendar/):
//
//	<kind>/<user>/home.json                 the user's home was set up
//	<kind>/<user>/c/<coll>/props.json       a collection and its properties
//	<kind>/<user>/c/<coll>/o/xx/yy/<name>   an object (store.Shard of its name)
//	<kind>/<user>/c/<coll>/p/xx/yy/<name>   an object's dead properties (rare)
//	<kind>/<user>/c/<coll>/c/<child>/...    a collection inside a plain one
//
// Objects are kept byte for byte as the client sent them, so their blob hash
// is their ETag and GET returns exactly what was PUT.

// Collection types.
const (
	TypePlain       = ""
	TypeAddressBook = "addressbook"
	TypeCalendar    = "calendar"
)

// Collection is an address book, a calendar or a plain WebDAV collection.
type Collection struct {
	// User owns the collection; Path is its path under the user's home
	// ("work", or "litmus/coll" for a collection in a plain one).
	User string `json:"-"`
	Path string `json:"-"`
	// Type is TypePlain, TypeAddressBook or TypeCalendar.
	Type        string    `json:"type"`
	DisplayName string    `json:"displayname,omitempty"`
	Description string    `json:"description,omitempty"`
	Color       string    `json:"color,omitempty"`
	Components  []string  `json:"components,omitempty"`
	Created     time.Time `json:"created"`
	// Dead holds dead properties: "{namespace}local" → inner XML.
	Dead map[string]string `json:"dead,omitempty"`
}

// Href is the collection's URL path, with a trailing slash.
func (c *Collection) Href() string { return "/" + c.User + "/" + c.Path + "/" }

// repo maps collections and objects to store paths.
type repo struct {
	kind string // store prefix

	// wmu serialises this server's writes (the store serialises them
	// anyway), so that the UID index moves with the commits.
	wmu  sync.Mutex
	mu   sync.Mutex
	uids map[string]*uidIndex // by collection dir
}

// uidIndex maps UIDs to object names in one collection, valid for the
// version `list` of the collection's objects folder.
type uidIndex struct {
	list   *listing
	byUID  map[string]string
	byName map[string]string
}

func (r *repo) homeDir(user string) string { return r.kind + "/" + user }

func (r *repo) collDir(user, p string) string {
	return r.kind + "/" + user + "/c/" + strings.ReplaceAll(p, "/", "/c/")
}

func objPath(dir, name string) string   { return dir + "/o/" + store.Shard(name) }
func propsPath(dir, name string) string { return dir + "/p/" + store.Shard(name) }

func segOK(s string) bool {
	if s == "" || len(s) > 200 || strings.ContainsAny(s, "/\\\x00") || s == "." || s == ".." || strings.EqualFold(s, ".git") {
		return false
	}
	return store.ValidatePath(s) == nil
}

// loadCollection reads a collection; nil when it does not exist.
func (r *repo) loadCollection(sn reader, user, p string) (*Collection, error) {
	dir := r.collDir(user, p)
	data, err := sn.Read(dir + "/props.json")
	if errors.Is(err, store.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c := &Collection{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("dav: collection %s: %w", dir, err)
	}
	c.User, c.Path = user, p
	return c, nil
}

// collectionTag returns what changes whenever anything in the collection
// changes (its folder's tree hash): the CTag.
func (r *repo) collectionTag(sn reader, c *Collection) (store.Hash, error) {
	e, err := sn.Stat(r.collDir(c.User, c.Path))
	if errors.Is(err, store.ErrNotExist) {
		return store.Hash{}, nil
	}
	return e.Hash, err
}

// listCollections lists the collections directly in parent ("" for the home).
func (r *repo) listCollections(sn reader, user, parent string) ([]*Collection, error) {
	var dir string
	if parent == "" {
		dir = r.homeDir(user) + "/c"
	} else {
		dir = r.collDir(user, parent) + "/c"
	}
	ents, err := sn.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []*Collection
	for _, e := range ents {
		if !e.Dir {
			continue
		}
		p := path.Base(e.Path)
		if parent != "" {
			p = parent + "/" + p
		}
		c, err := r.loadCollection(sn, user, p)
		if err != nil {
			return nil, err
		}
		if c != nil {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// listObjects lists a collection's objects (without data), sorted by name.
func (r *repo) listObjects(sn reader, c *Collection) ([]*Object, error) {
	href := c.Href()
	if v, ok := sn.(*view); ok {
		l, err := v.list(r.collDir(c.User, c.Path) + "/o")
		if err != nil {
			return nil, err
		}
		names := l.sortedNames()
		out := make([]*Object, len(names))
		objs := make([]Object, len(names))
		for i, name := range names {
			objs[i] = Object{Name: name, Href: href + name, ETag: l.m[name]}
			out[i] = &objs[i]
		}
		return out, nil
	}
	ents, err := sn.List(r.collDir(c.User, c.Path) + "/o")
	if err != nil {
		return nil, err
	}
	out := make([]*Object, 0, len(ents))
	for _, e := range ents {
		name := store.Unshard(e.Path)
		out = append(out, &Object{Name: name, Href: href + name, ETag: e.Hash})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// statObject returns an object without data; nil when absent.
func (r *repo) statObject(sn reader, c *Collection, name string) (*Object, error) {
	e, err := sn.Stat(objPath(r.collDir(c.User, c.Path), name))
	if errors.Is(err, store.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &Object{Name: name, Href: c.Href() + name, ETag: e.Hash}, nil
}

// statter returns statObject for many objects of c: on a view it looks
// names up in the collection's listing, loaded once. href is the object's
// href (c.Href() + name), which the caller has at hand.
func (r *repo) statter(sn reader, c *Collection) func(name, href string) (*Object, error) {
	v, ok := sn.(*view)
	if !ok {
		return func(name, _ string) (*Object, error) { return r.statObject(sn, c, name) }
	}
	var l *listing
	return func(name, href string) (*Object, error) {
		if l == nil {
			var err error
			if l, err = v.list(r.collDir(c.User, c.Path) + "/o"); err != nil {
				return nil, err
			}
		}
		h, ok := l.m[name]
		if !ok {
			return nil, nil
		}
		return &Object{Name: name, Href: href, ETag: h}, nil
	}
}

func (r *repo) readObject(sn reader, c *Collection, o *Object) error {
	if o.Data != nil {
		return nil
	}
	if v, ok := sn.(*view); ok && !o.ETag.IsZero() {
		// The ETag came from this view's listing: the contents are that
		// blob, without building and splitting the object's path again.
		d, err := v.blob(o.ETag)
		if err != nil {
			return err
		}
		o.Data = d
		return nil
	}
	d, err := sn.Read(objPath(r.collDir(c.User, c.Path), o.Name))
	if err != nil {
		return err
	}
	o.Data = d
	return nil
}

// uidIndexFor returns the UID index of a collection as of view v,
// rebuilding it when the collection changed since it was built. parse
// extracts a UID from an object's data.
func (r *repo) uidIndexFor(v *view, c *Collection, parse func([]byte) string) (*uidIndex, error) {
	dir := r.collDir(c.User, c.Path)
	l, err := v.list(dir + "/o")
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	idx := r.uids[dir]
	r.mu.Unlock()
	if idx != nil && idx.list == l {
		return idx, nil
	}
	idx = &uidIndex{list: l, byUID: make(map[string]string, len(l.m)), byName: make(map[string]string, len(l.m))}
	for name := range l.m {
		o := &Object{Name: name}
		if err := r.readObject(v, c, o); err != nil {
			return nil, err
		}
		if uid := parse(o.Data); uid != "" {
			idx.byUID[uid] = name
			idx.byName[name] = uid
		}
	}
	r.mu.Lock()
	if r.uids == nil {
		r.uids = map[string]*uidIndex{}
	}
	r.uids[dir] = idx
	r.mu.Unlock()
	return idx, nil
}

// updateIndex records a written (uid != "") or deleted (uid == "") object
// in the index of a collection whose objects folder is now at version l;
// old is the version the change was made on. An index that was not at old
// is dropped.
func (r *repo) updateIndex(c *Collection, old, l *listing, name, uid string) {
	dir := r.collDir(c.User, c.Path)
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := r.uids[dir]
	if idx == nil {
		return
	}
	if idx.list != old || l == nil {
		delete(r.uids, dir)
		return
	}
	// Only writers use the index, and they hold repo.wmu.
	idx.list = l
	if prev, ok := idx.byName[name]; ok {
		delete(idx.byUID, prev)
		delete(idx.byName, name)
	}
	if uid != "" {
		idx.byUID[uid] = name
		idx.byName[name] = uid
	}
}

func (r *repo) dropIndex(c *Collection) {
	r.mu.Lock()
	delete(r.uids, r.collDir(c.User, c.Path))
	r.mu.Unlock()
}

// dropIndexes drops the UID indexes of the collections in the folders dirs
// and of every collection inside them.
func (r *repo) dropIndexes(dirs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.uids {
		for _, d := range dirs {
			if k == d || strings.HasPrefix(k, d+"/") {
				delete(r.uids, k)
			}
		}
	}
}
