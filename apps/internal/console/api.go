package console

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

//go:embed openapi.json
var openAPI []byte

func (c *Console) apiRoutes() {
	m := c.mux
	m.HandleFunc("GET /api/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
	m.HandleFunc("GET /api/v1/me", c.api(c.apiMe))
	m.HandleFunc("GET /api/v1/users/{user}/timeline", c.own(c.apiTimeline))
	m.HandleFunc("GET /api/v1/users/{user}/changes/{rev}", c.own(c.apiChange))
	m.HandleFunc("GET /api/v1/users/{user}/folders", c.own(c.apiFolders))
	m.HandleFunc("GET /api/v1/users/{user}/items", c.own(c.apiItems))
	m.HandleFunc("GET /api/v1/users/{user}/item", c.own(c.apiItem))
	m.HandleFunc("GET /api/v1/users/{user}/history", c.own(c.apiHistory))
	m.HandleFunc("GET /api/v1/users/{user}/diff", c.own(c.apiDiff))
	m.HandleFunc("POST /api/v1/users/{user}/restore", c.own(c.apiRestore))
	m.HandleFunc("GET /api/v1/users/{user}/storage", c.own(c.apiStorage))
	m.HandleFunc("GET /api/v1/users/{user}/watch", c.own(c.apiWatch))
	m.HandleFunc("GET /api/v1/users/{user}/app-passwords", c.own(c.apiAppPasswords))
	m.HandleFunc("POST /api/v1/users/{user}/app-passwords", c.own(c.apiAppPasswordAdd))
	m.HandleFunc("DELETE /api/v1/users/{user}/app-passwords/{id}", c.own(c.apiAppPasswordDelete))
	m.HandleFunc("GET /api/v1/admin/users", c.admin(c.apiUsers))
	m.HandleFunc("POST /api/v1/admin/users", c.admin(c.apiUserAdd))
	m.HandleFunc("PUT /api/v1/admin/users/{name}/password", c.admin(c.apiUserPassword))
	m.HandleFunc("DELETE /api/v1/admin/users/{name}", c.admin(c.apiUserDelete))
	m.HandleFunc("GET /api/v1/admin/peers", c.admin(c.apiPeers))
	m.HandleFunc("POST /api/v1/admin/invitations", c.admin(c.apiInvite))
	m.HandleFunc("GET /api/v1/certificate", c.api(c.apiCert))
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		c.apiError(w, r, &httpError{404, "no such endpoint: see /api/openapi.json"})
	})
}

// apiAuth finds the API caller: HTTP basic authentication (rate-limited
// like every login), or the console's session cookie; a write through
// the cookie must carry the session's CSRF token in X-CSRF-Token.
func (c *Console) apiAuth(w http.ResponseWriter, r *http.Request) (string, bool, error) {
	if name, pw, ok := r.BasicAuth(); ok {
		if err := c.checkLogin(r.Context(), r.RemoteAddr, name, pw); err != nil {
			return "", false, err
		}
		return name, false, nil
	}
	if s := c.session(r); s != nil && c.userExists(s.user) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameToken(r.Header.Get("X-CSRF-Token"), s.csrf) {
			return "", true, &httpError{403, "a write with the session cookie needs its CSRF token in X-CSRF-Token"}
		}
		return s.user, true, nil
	}
	return "", false, &httpError{401, "log in with HTTP basic authentication"}
}

type apiFunc func(w http.ResponseWriter, r *http.Request, user string) error

func (c *Console) api(fn apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user, _, err := c.apiAuth(w, r)
		if err == nil {
			err = fn(w, r, user)
		}
		if err != nil {
			c.apiError(w, r, err)
		}
	}
}

// own serves a user's own data: another user's path is a 403, whoever
// asks.
func (c *Console) own(fn apiFunc) http.HandlerFunc {
	return c.api(func(w http.ResponseWriter, r *http.Request, user string) error {
		if r.PathValue("user") != user {
			return &httpError{403, fmt.Sprintf("%s's data is not yours: you may only reach /api/v1/users/%s/", r.PathValue("user"), user)}
		}
		return fn(w, r, user)
	})
}

func (c *Console) admin(fn apiFunc) http.HandlerFunc {
	return c.api(func(w http.ResponseWriter, r *http.Request, user string) error {
		if !c.isAdmin(user) {
			return &httpError{403, "user administration is for admins (users with git write access)"}
		}
		return fn(w, r, user)
	})
}

func (c *Console) apiError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	st := statusOf(err)
	msg := err.Error()
	if st == 500 {
		c.log.Error("console: api request failed", "path", r.URL.Path, "err", err)
		msg = "internal error (see the server's log)"
	}
	switch st {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="nymote `+c.opts.App+`", charset="UTF-8"`)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "10")
	}
	writeJSON(w, st, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (c *Console) apiMe(w http.ResponseWriter, r *http.Request, user string) error {
	u, err := c.st.LookupUser(user)
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"user": u, "admin": u.Git == store.GitWrite, "app": c.opts.App})
	return nil
}

func (c *Console) apiTimeline(w http.ResponseWriter, r *http.Request, user string) error {
	q := r.URL.Query()
	f, err := parseFilter(q)
	if err != nil {
		return err
	}
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	p, err := c.timelineOf(user, q.Get("cursor"), limit, f)
	if err != nil {
		return err
	}
	writeJSON(w, 200, p)
	return nil
}

func (c *Console) apiChange(w http.ResponseWriter, r *http.Request, user string) error {
	d, err := newHistorian(c.st, user).detail(r.PathValue("rev"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, d)
	return nil
}

func (c *Console) apiFolders(w http.ResponseWriter, r *http.Request, user string) error {
	sn, err := c.snapshot(r.URL.Query().Get("rev"))
	if err != nil {
		return err
	}
	type folder struct {
		Service string `json:"service"`
		Name    string `json:"name"`
		ID      string `json:"id,omitempty"`
	}
	out := []folder{}
	if boxes, err := mailstore.ReadMailboxes(sn, user); err == nil {
		for _, b := range boxes {
			out = append(out, folder{ServiceMail, b.Info.Name, b.ID})
		}
	}
	for _, s := range []string{ServiceContacts, ServiceCalendar} {
		for _, coll := range davCollections(sn, s, user) {
			out = append(out, folder{Service: s, Name: coll})
		}
	}
	writeJSON(w, 200, map[string]any{"rev": sn.Commit().String(), "folders": out})
	return nil
}

// folderDir finds the store folder of a user's mailbox or collection at
// sn.
func folderDir(sn *store.Snapshot, user, service, folder string) (string, error) {
	folder, err := cleanFolder(folder)
	if err != nil {
		return "", err
	}
	if folder == "" {
		return "", &httpError{400, "give service and folder"}
	}
	switch service {
	case ServiceMail:
		b, err := mailstore.FindStoredMailbox(sn, user, folder)
		if err != nil {
			return "", &httpError{404, fmt.Sprintf("no mailbox %q at %s", folder, sn.Commit())}
		}
		return mailstore.BoxDir(user, b.ID), nil
	case ServiceContacts, ServiceCalendar:
		dir := davCollDir(service, user, folder)
		if ok, _ := sn.Exists(dir + "/props.json"); !ok {
			return "", &httpError{404, fmt.Sprintf("no %s collection %q at %s", service, folder, sn.Commit())}
		}
		return dir, nil
	}
	return "", &httpError{400, fmt.Sprintf("unknown service %q: want mail, contacts or calendar", service)}
}

// apiItems lists a folder at a revision.
func (c *Console) apiItems(w http.ResponseWriter, r *http.Request, user string) error {
	q := r.URL.Query()
	sn, err := c.snapshot(q.Get("rev"))
	if err != nil {
		return err
	}
	service := q.Get("service")
	dir, err := folderDir(sn, user, service, q.Get("folder"))
	if err != nil {
		return err
	}
	if service == ServiceMail {
		id := dir[strings.LastIndexByte(dir, '/')+1:]
		msgs, err := mailstore.ReadMailboxMessages(sn, user, id)
		if err != nil {
			return err
		}
		out := make([]MessageView, 0, len(msgs))
		for _, m := range msgs {
			out = append(out, messageView(m))
		}
		writeJSON(w, 200, map[string]any{"rev": sn.Commit().String(), "messages": out})
		return nil
	}
	ents, err := sn.List(dir + "/o")
	if err != nil {
		return err
	}
	type item struct {
		Name  string `json:"name"`
		ETag  string `json:"etag"`
		Kind  string `json:"kind"`
		Title string `json:"title"`
	}
	out := make([]item, 0, len(ents))
	for _, e := range ents {
		it := item{Name: store.Unshard(strings.TrimPrefix(e.Path, dir+"/o/")), ETag: e.Hash.String()}
		if data, err := sn.Read(e.Path); err == nil {
			it.Kind, it.Title = objectName(parseProps(data))
		}
		out = append(out, it)
	}
	writeJSON(w, 200, map[string]any{"rev": sn.Commit().String(), "items": out})
	return nil
}

// itemPath is the store path of one item (a message's raw content, a DAV
// object).
func itemPath(sn *store.Snapshot, user, service, folder, item string) (string, error) {
	if item == "" || strings.ContainsAny(item, "/\\\x00") || item == "." || item == ".." {
		return "", &httpError{400, fmt.Sprintf("bad item name %q", item)}
	}
	dir, err := folderDir(sn, user, service, folder)
	if err != nil {
		return "", err
	}
	if service == ServiceMail {
		id := dir[strings.LastIndexByte(dir, '/')+1:]
		return mailstore.MessagePath(sn, user, id, item, "eml"), nil
	}
	return dir + "/o/" + store.Shard(item), nil
}

// apiItem reads one item at a revision: raw (format=raw) or parsed.
func (c *Console) apiItem(w http.ResponseWriter, r *http.Request, user string) error {
	q := r.URL.Query()
	sn, err := c.snapshot(q.Get("rev"))
	if err != nil {
		return err
	}
	service, folder, name := q.Get("service"), q.Get("folder"), q.Get("item")
	p, err := itemPath(sn, user, service, folder, name)
	if err != nil {
		return err
	}
	data, err := sn.Read(p)
	if err != nil {
		return &httpError{404, fmt.Sprintf("no item %q in %s %q at %s", name, service, folder, sn.Commit())}
	}
	if q.Get("format") == "raw" {
		ct := map[string]string{ServiceMail: "message/rfc822", ServiceContacts: "text/vcard; charset=utf-8", ServiceCalendar: "text/calendar; charset=utf-8"}[service]
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Disposition", "attachment")
		w.Write(data)
		return nil
	}
	out := map[string]any{"rev": sn.Commit().String(), "service": service, "folder": folder, "item": name}
	if service == ServiceMail {
		meta, err := sn.Read(strings.TrimSuffix(p, ".eml") + ".meta")
		if err != nil {
			return err
		}
		sm, err := mailstore.ReadMeta(meta)
		if err != nil {
			return err
		}
		sm.Key = name
		v := messageView(sm)
		out["message"] = v
		hdr, body, _ := strings.Cut(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n\n")
		out["header"] = hdr
		if len(body) > 1<<20 {
			body = body[:1<<20]
		}
		out["body"] = body
	} else {
		ps := parseProps(data)
		kind, title := objectName(ps)
		fields := []map[string]string{}
		for _, p := range ps {
			fields = append(fields, map[string]string{"field": p.Key, "label": label(p.Key), "value": p.Value, "params": p.Params})
		}
		out["kind"], out["title"], out["fields"] = kind, title, fields
	}
	writeJSON(w, 200, out)
	return nil
}

// apiHistory lists the changes of a folder or an item.
func (c *Console) apiHistory(w http.ResponseWriter, r *http.Request, user string) error {
	q := r.URL.Query()
	sn, err := c.snapshot(q.Get("rev"))
	if err != nil {
		return err
	}
	service, folder, item := q.Get("service"), q.Get("folder"), q.Get("item")
	var p string
	if item != "" {
		p, err = itemPath(sn, user, service, folder, item)
	} else {
		p, err = folderDir(sn, user, service, folder)
	}
	if err != nil {
		return err
	}
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	infos, err := c.st.Log(store.LogOptions{Rev: sn.Commit().String(), Path: p, Limit: limit})
	if err != nil {
		return err
	}
	h := newHistorian(c.st, user)
	sc := []scope{{service, p}}
	out := []Entry{}
	for _, ci := range infos {
		e, ok, err := h.entry(ci, sc)
		if err != nil {
			return err
		}
		if ok {
			out = append(out, e)
		}
	}
	writeJSON(w, 200, map[string]any{"path": p, "entries": out})
	return nil
}

// apiDiff compares two revisions within the user's data (a folder, or a
// service, or all of it).
func (c *Console) apiDiff(w http.ResponseWriter, r *http.Request, user string) error {
	q := r.URL.Query()
	from, err := c.snapshot(q.Get("from"))
	if err != nil {
		return err
	}
	to, err := c.snapshot(q.Get("to"))
	if err != nil {
		return err
	}
	if q.Get("from") == "" {
		return &httpError{400, "give from (and to, default the head)"}
	}
	service := q.Get("service")
	var prefixes []string
	switch {
	case q.Get("folder") != "":
		sn := to
		if _, err := folderDir(to, user, service, q.Get("folder")); err != nil {
			sn = from
		}
		dir, err := folderDir(sn, user, service, q.Get("folder"))
		if err != nil {
			return err
		}
		prefixes = []string{dir}
	case service != "":
		prefixes = []string{userPrefix(service, user)}
	default:
		for _, s := range allServices {
			prefixes = append(prefixes, userPrefix(s, user))
		}
	}
	type change struct {
		Path   string `json:"path"`
		Action string `json:"action"`
		From   string `json:"from,omitempty"`
		To     string `json:"to,omitempty"`
	}
	out := []change{}
	for _, p := range prefixes {
		ch, err := c.st.DiffUnder(from.Commit(), to.Commit(), p)
		if err != nil {
			return err
		}
		for _, x := range ch {
			cg := change{Path: x.Path, Action: x.Action()}
			if !x.From.IsZero() {
				cg.From = x.From.String()
			}
			if !x.To.IsZero() {
				cg.To = x.To.String()
			}
			out = append(out, cg)
		}
	}
	writeJSON(w, 200, map[string]any{"from": from.Commit().String(), "to": to.Commit().String(), "changes": out})
	return nil
}

// restoreRequest is the body of POST .../restore: either undo a change,
// or bring a folder back to a revision or a time.
type restoreRequest struct {
	Undo    string `json:"undo,omitempty"`
	Service string `json:"service,omitempty"`
	Folder  string `json:"folder,omitempty"`
	Rev     string `json:"rev,omitempty"`
	At      string `json:"at,omitempty"`
}

func (c *Console) apiRestore(w http.ResponseWriter, r *http.Request, user string) error {
	var req restoreRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return &httpError{400, fmt.Sprintf("body: want JSON {\"undo\":REV} or {\"service\",\"folder\",\"rev\" or \"at\"}: %v", err)}
	}
	var res RestoreResult
	var err error
	if req.Undo != "" {
		res, err = c.undo(r, user, req.Undo, "API")
	} else {
		res, err = c.restoreAt(r, user, req.Service, req.Folder, req.Rev, req.At, "API")
	}
	if err != nil {
		return err
	}
	writeJSON(w, 200, res)
	return nil
}

func (c *Console) apiStorage(w http.ResponseWriter, r *http.Request, user string) error {
	us, err := c.usage(user)
	if err != nil {
		return err
	}
	if us == nil {
		us = []FolderUsage{}
	}
	writeJSON(w, 200, map[string]any{"folders": us})
	return nil
}

func (c *Console) apiCert(w http.ResponseWriter, r *http.Request, user string) error {
	ci := c.cert()
	if ci == nil {
		return &httpError{404, "this app has no certificate"}
	}
	writeJSON(w, 200, map[string]any{"subject": ci.Subject, "dns_names": ci.DNSNames, "not_after": ci.NotAfter, "days_left": ci.DaysLeft, "issuer": ci.Issuer})
	return nil
}

func (c *Console) apiUsers(w http.ResponseWriter, r *http.Request, user string) error {
	us, err := c.st.Users()
	if err != nil {
		return err
	}
	if us == nil {
		us = []store.User{}
	}
	writeJSON(w, 200, map[string]any{"users": us})
	return nil
}

type userRequest struct {
	Name     string          `json:"name"`
	Password string          `json:"password"`
	Git      store.GitAccess `json:"git,omitempty"`
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &httpError{400, fmt.Sprintf("body: %v", err)}
	}
	return nil
}

func (c *Console) apiUserAdd(w http.ResponseWriter, r *http.Request, user string) error {
	var req userRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := c.st.AddUser(r.Context(), req.Name, req.Password, req.Git); err != nil {
		return badRequest(err)
	}
	u, err := c.st.LookupUser(req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, 201, u)
	return nil
}

func (c *Console) apiUserPassword(w http.ResponseWriter, r *http.Request, user string) error {
	var req struct {
		Password string `json:"password"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := c.st.SetPassword(r.Context(), name, req.Password); err != nil {
		return badRequest(err)
	}
	c.endUserSessions(name, nil)
	w.WriteHeader(204)
	return nil
}

func (c *Console) apiUserDelete(w http.ResponseWriter, r *http.Request, user string) error {
	name := r.PathValue("name")
	if name == user {
		return &httpError{400, "you cannot delete yourself"}
	}
	if err := c.st.DeleteUser(r.Context(), name); err != nil {
		return badRequest(err)
	}
	c.endUserSessions(name, nil)
	w.WriteHeader(204)
	return nil
}

// Watch streams: Server-Sent Events, one "change" event per commit that
// touches the user's data (the timeline's entry), from now on. A client
// that reads slowly never costs unbounded memory: the store's watcher
// coalesces what the stream has not taken, and when events were merged
// the stream says so with a "resync" event (from, to) after which the
// client reads the timeline or a diff to catch up.

// sseHeartbeat keeps proxies from closing an idle stream.
var sseHeartbeat = 30 * time.Second

// sseWriteTimeout drops a client that takes no bytes for this long.
var sseWriteTimeout = 2 * time.Minute

func (c *Console) apiWatch(w http.ResponseWriter, r *http.Request, user string) error {
	wt, err := c.st.Watch("", "")
	if err != nil {
		return err
	}
	defer wt.Close()
	c.sse.Inc()
	defer c.sse.Dec()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(200)
	head, _ := c.st.Resolve("")
	fmt.Fprintf(w, "event: hello\ndata: {\"head\":%q}\n\n", head.String())
	rc.Flush()
	return c.stream(r.Context(), w, rc, wt, user)
}

// stream writes the watcher's events for user to w until ctx ends.
func (c *Console) stream(ctx context.Context, w io.Writer, rc *http.ResponseController, wt *store.Watcher, user string) error {
	h := newHistorian(c.st, user)
	scopes, _ := h.scopes(filter{})
	prefixes := make([]string, 0, len(scopes))
	for _, s := range scopes {
		prefixes = append(prefixes, s.prefix)
	}
	mine := func(paths []string) bool {
		for _, p := range paths {
			for _, pre := range prefixes {
				if p == pre || strings.HasPrefix(p, pre+"/") {
					return true
				}
			}
		}
		return false
	}
	tick := time.NewTicker(sseHeartbeat)
	defer tick.Stop()
	write := func(s string) error {
		if rc != nil {
			rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		}
		if _, err := io.WriteString(w, s); err != nil {
			return err
		}
		if rc != nil {
			return rc.Flush()
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := write(": keep-alive\n\n"); err != nil {
				return nil
			}
			continue
		case <-wt.Ready():
		}
		ev, err := wt.Next(ctx)
		if err != nil {
			return nil
		}
		if !mine(ev.Paths) && len(ev.Paths) > 0 {
			continue
		}
		infos, err := c.st.Log(store.LogOptions{Rev: ev.New.String(), Limit: 1})
		if err != nil || len(infos) == 0 {
			continue
		}
		ci := infos[0]
		var msg string
		if ev.Old.IsZero() || len(ci.Parents) == 0 || ci.Parents[0] != ev.Old {
			// Events were coalesced (a slow reader) or the branch
			// jumped: the client catches up from the timeline.
			b, _ := json.Marshal(map[string]string{"from": ev.Old.String(), "to": ev.New.String()})
			msg = "event: resync\ndata: " + string(b) + "\n\n"
		} else {
			e, ok, err := h.entry(ci, scopes)
			if err != nil || !ok {
				continue
			}
			b, _ := json.Marshal(e)
			msg = "event: change\nid: " + e.Rev + "\ndata: " + string(b) + "\n\n"
		}
		if err := write(msg); err != nil {
			return nil
		}
	}
}
