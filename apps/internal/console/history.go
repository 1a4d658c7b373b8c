package console

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// Services whose data the console shows, each a top folder of the store
// with the user's data below it.
const (
	ServiceMail     = "mail"
	ServiceContacts = "contacts"
	ServiceCalendar = "calendar"
	ServiceAccount  = "account" // the user's record under users/
)

var allServices = []string{ServiceMail, ServiceContacts, ServiceCalendar, ServiceAccount}

// userPrefix is the store folder of a user's data in a service.
func userPrefix(service, user string) string {
	switch service {
	case ServiceAccount:
		return store.UsersPrefix + "/" + user
	case ServiceMail:
		return mailstore.UserDir(user)
	}
	return service + "/" + user
}

// davCollDir is the store folder of a DAV collection (see dav's layout).
func davCollDir(service, user, coll string) string {
	return service + "/" + user + "/c/" + strings.ReplaceAll(coll, "/", "/c/")
}

// Entry is one change of a person's data, as the timeline shows it.
type Entry struct {
	Rev      string    `json:"rev"`
	Parent   string    `json:"parent,omitempty"`
	When     time.Time `json:"when"`
	Author   string    `json:"author,omitempty"`
	Protocol string    `json:"protocol"`
	// Client is the program that made the change, where the commit names
	// it (a Client: trailer).
	Client string `json:"client,omitempty"`
	// Services and Folders the change touched (folders as "mail/INBOX",
	// "contacts/default").
	Services []string `json:"services"`
	Folders  []string `json:"folders,omitempty"`
	// Words are the change in sentences, one per part.
	Words []string `json:"words"`
}

// protocolOf tells, from a commit message, which protocol or program made
// the change.
func protocolOf(msg string) (proto, client string) {
	subject, body, _ := strings.Cut(msg, "\n")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, "Client: "); ok {
			client = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "Via: "); ok {
			proto = strings.TrimSpace(v)
		}
	}
	if proto != "" {
		return proto, client
	}
	switch {
	case strings.HasPrefix(subject, "mail: deliver"):
		return "SMTP", client
	case strings.HasPrefix(subject, "mail queue:"):
		return "mail queue", client
	case strings.HasPrefix(subject, "mail: recent"):
		return "IMAP", client
	case strings.HasPrefix(subject, "mail: create the mailboxes of "):
		return "mail (first use)", client
	case strings.HasPrefix(subject, "mail: ") && strings.Contains(subject, " changes"):
		smtp, imap := strings.Contains(body, "mail: deliver"), strings.Contains(body, "mail: ") && strings.Count(body, "mail: ") > strings.Count(body, "mail: deliver")
		switch {
		case smtp && imap:
			return "SMTP, IMAP", client
		case smtp:
			return "SMTP", client
		}
		return "IMAP", client
	case strings.HasPrefix(subject, "mail: "):
		return "IMAP", client
	case strings.HasPrefix(subject, "contacts: "):
		return "CardDAV", client
	case strings.HasPrefix(subject, "calendar: "):
		return "CalDAV", client
	case strings.HasPrefix(subject, "console: "):
		return "web console", client
	case strings.HasPrefix(subject, "api: "):
		return "API", client
	case strings.HasPrefix(subject, "user "):
		return "administration", client
	case strings.HasPrefix(subject, "Merge"), strings.HasPrefix(subject, "merge"):
		return "sync", client
	case strings.HasPrefix(subject, "Revert"):
		return "revert", client
	}
	return "store", client
}

// filter selects the changes the timeline shows.
type filter struct {
	Service string // "" all
	Folder  string // "" all; a mailbox or collection name (needs Service)
	After   time.Time
	Before  time.Time
}

// historian reads a user's history out of the store.
type historian struct {
	st   *store.Store
	user string
	// memo of mailbox names by id and of collection names by folder,
	// for one request.
	boxNames  map[string]string
	collNames map[string]string
}

func newHistorian(st *store.Store, user string) *historian {
	return &historian{st: st, user: user, boxNames: map[string]string{}, collNames: map[string]string{}}
}

// scopes are the store folders a filter looks at, with their service.
type scope struct{ service, prefix string }

func (h *historian) scopes(f filter) ([]scope, error) {
	var out []scope
	for _, s := range allServices {
		if f.Service != "" && f.Service != s {
			continue
		}
		p := userPrefix(s, h.user)
		if f.Folder != "" {
			switch s {
			case ServiceMail:
				id, err := h.boxID(f.Folder)
				if err != nil {
					return nil, err
				}
				p = mailstore.BoxDir(h.user, id)
			case ServiceContacts, ServiceCalendar:
				p = davCollDir(s, h.user, f.Folder)
			}
		}
		out = append(out, scope{s, p})
	}
	if len(out) == 0 {
		return nil, &httpError{400, fmt.Sprintf("unknown service %q: want mail, contacts, calendar or account", f.Service)}
	}
	return out, nil
}

// boxID finds a mailbox by name, at the head or, for a mailbox deleted
// since, anywhere in the names seen.
func (h *historian) boxID(name string) (string, error) {
	sn, err := h.st.Snapshot("")
	if err != nil {
		return "", err
	}
	b, err := mailstore.FindStoredMailbox(sn, h.user, name)
	if err != nil {
		if errors.Is(err, mailstore.ErrNoMailbox) {
			return "", &httpError{404, fmt.Sprintf("no mailbox %q", name)}
		}
		return "", err
	}
	return b.ID, nil
}

// Page is one page of the timeline.
type Page struct {
	Entries []Entry `json:"entries"`
	// Next is the cursor of the next page ("" at the end of history).
	Next string `json:"next,omitempty"`
	// Scanned is how many commits this page looked at; ScannedTo the time
	// of the last.
	Scanned   int       `json:"scanned"`
	ScannedTo time.Time `json:"scanned_to,omitzero"`
}

// maxScan bounds the commits one page looks at, so that a page answers
// in bounded time however sparse the user's changes are; the page then
// ends early with a cursor to go on.
const maxScan = 4000

// page walks the history from cursor ("" the head), newest first, and
// returns up to limit entries of the user's changes that f selects.
func (h *historian) page(cursor string, limit int, f filter) (*Page, error) {
	scopes, err := h.scopes(f)
	if err != nil {
		return nil, err
	}
	p := &Page{Entries: []Entry{}}
	rev := cursor
	chunk := limit + 8
	for {
		chunk = min(chunk*2, 1024)
		infos, err := h.st.Log(store.LogOptions{Rev: rev, Limit: chunk + 1})
		if err != nil {
			return nil, err
		}
		if len(infos) == 0 {
			return p, nil
		}
		more := len(infos) > chunk
		if more {
			rev = infos[chunk].Hash.String()
			infos = infos[:chunk]
		}
		for _, c := range infos {
			if len(p.Entries) >= limit || p.Scanned >= maxScan {
				p.Next = c.Hash.String()
				return p, nil
			}
			if !f.After.IsZero() && c.When.Before(f.After) {
				return p, nil // history is newest first: nothing older matches
			}
			p.Scanned++
			p.ScannedTo = c.When
			if !f.Before.IsZero() && !c.When.Before(f.Before) {
				continue
			}
			e, ok, err := h.entry(c, scopes)
			if err != nil {
				return nil, err
			}
			if ok {
				p.Entries = append(p.Entries, e)
			}
		}
		if !more {
			return p, nil
		}
	}
}

func parentOf(c store.CommitInfo) store.Hash {
	if len(c.Parents) > 0 {
		return c.Parents[0]
	}
	return store.Hash{}
}

// changesOf lists what commit c changed under the scopes, by service.
// With several scopes it diffs the whole trees once (the diff skips equal
// folders, so it costs the size of the change) and sorts the changes out.
func (h *historian) changesOf(c store.CommitInfo, scopes []scope) (map[string][]store.Change, error) {
	out := map[string][]store.Change{}
	parent := parentOf(c)
	if len(scopes) > 1 {
		all, err := h.st.DiffCommits(parent, c.Hash)
		if err != nil {
			return nil, err
		}
		for _, x := range all {
			for _, s := range scopes {
				if x.Path == s.prefix || strings.HasPrefix(x.Path, s.prefix+"/") {
					out[s.service] = append(out[s.service], x)
					break
				}
			}
		}
		return out, nil
	}
	for _, s := range scopes {
		prefix := s.prefix
		if s.service == ServiceAccount {
			prefix = store.UsersPrefix // the user's record is an item of it
		}
		ch, err := h.st.DiffUnder(parent, c.Hash, prefix)
		if err != nil {
			return nil, err
		}
		if s.service == ServiceAccount {
			var mine []store.Change
			for _, x := range ch {
				if x.Path == s.prefix {
					mine = append(mine, x)
				}
			}
			ch = mine
		}
		if len(ch) > 0 {
			out[s.service] = append(out[s.service], ch...)
		}
	}
	return out, nil
}

// entry describes commit c if it changed the user's data under scopes.
func (h *historian) entry(c store.CommitInfo, scopes []scope) (Entry, bool, error) {
	byService, err := h.changesOf(c, scopes)
	if err != nil || len(byService) == 0 {
		return Entry{}, false, err
	}
	e := Entry{Rev: c.Hash.String(), When: c.When, Author: c.Author.Name}
	if p := parentOf(c); !p.IsZero() {
		e.Parent = p.String()
	}
	e.Protocol, e.Client = protocolOf(c.Message)
	for _, s := range allServices {
		ch := byService[s]
		if len(ch) == 0 {
			continue
		}
		e.Services = append(e.Services, s)
		d, err := h.describe(s, c, ch)
		if err != nil {
			return Entry{}, false, err
		}
		e.Folders = append(e.Folders, d.folders...)
		e.Words = append(e.Words, d.words...)
	}
	return e, true, nil
}

type description struct {
	folders []string
	words   []string
}

func (h *historian) describe(service string, c store.CommitInfo, ch []store.Change) (description, error) {
	switch service {
	case ServiceMail:
		return h.describeMail(c, ch)
	case ServiceContacts, ServiceCalendar:
		return h.describeDAV(service, c, ch)
	}
	return h.describeAccount(c, ch), nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// read reads path at commit c.
func (h *historian) read(c store.Hash, path string) ([]byte, error) {
	sn, err := h.st.SnapshotOf(c)
	if err != nil {
		return nil, err
	}
	return sn.Read(path)
}

// boxName names mailbox id as of commit c (or its parent, for a mailbox
// deleted there).
func (h *historian) boxName(id string, at ...store.Hash) string {
	if n, ok := h.boxNames[id]; ok {
		return n
	}
	for _, c := range at {
		if c.IsZero() {
			continue
		}
		sn, err := h.st.SnapshotOf(c)
		if err != nil {
			continue
		}
		if info, err := mailstore.ReadMailboxInfo(sn, h.user, id); err == nil {
			h.boxNames[id] = info.Name
			return info.Name
		}
	}
	return "a mailbox"
}

// mailBox is what one commit did to one mailbox.
type mailBox struct {
	id             string
	added, removed []string // message keys
	flags          []store.Change
	info           *store.Change
}

func groupMail(ch []store.Change) []*mailBox {
	boxes := map[string]*mailBox{}
	var order []string
	for _, c := range ch {
		pi, ok := mailstore.ParsePath(c.Path)
		if !ok || pi.Box == "" {
			continue
		}
		b := boxes[pi.Box]
		if b == nil {
			b = &mailBox{id: pi.Box}
			boxes[pi.Box] = b
			order = append(order, pi.Box)
		}
		switch pi.Kind {
		case "eml":
			switch c.Action() {
			case "add":
				b.added = append(b.added, pi.Key)
			case "delete":
				b.removed = append(b.removed, pi.Key)
			}
		case "flags":
			b.flags = append(b.flags, c)
		case "info":
			c := c
			b.info = &c
		}
	}
	out := make([]*mailBox, 0, len(order))
	for _, id := range order {
		out = append(out, boxes[id])
	}
	return out
}

// subjectOf reads the subject of message key of box at commit at.
func (h *historian) subjectOf(at store.Hash, box, key string) string {
	if at.IsZero() {
		return ""
	}
	sn, err := h.st.SnapshotOf(at)
	if err != nil {
		return ""
	}
	data, err := sn.Read(mailstore.MessagePath(sn, h.user, box, key, "meta"))
	if err != nil {
		return ""
	}
	m, err := mailstore.ReadMeta(data)
	if err != nil || m.Summary == nil || m.Summary.Envelope == nil {
		return ""
	}
	return m.Summary.Envelope.Subject
}

// flagChange is one message's flags before and after.
type flagChange struct {
	Key           string
	Before, After []imap.Flag
}

func (h *historian) flagChanges(chunks []store.Change) []flagChange {
	var out []flagChange
	for _, c := range chunks {
		var b, a map[string][]imap.Flag
		if !c.From.IsZero() {
			if data, err := h.st.ReadBlob(c.From); err == nil {
				b = mailstore.ReadChunk(data)
			}
		}
		if !c.To.IsZero() {
			if data, err := h.st.ReadBlob(c.To); err == nil {
				a = mailstore.ReadChunk(data)
			}
		}
		keys := map[string]bool{}
		for k := range b {
			keys[k] = true
		}
		for k := range a {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			if fmt.Sprint(b[k]) != fmt.Sprint(a[k]) {
				out = append(out, flagChange{Key: k, Before: b[k], After: a[k]})
			}
		}
	}
	return out
}

func flagSet(fs []imap.Flag) map[imap.Flag]bool {
	m := map[imap.Flag]bool{}
	for _, f := range fs {
		m[f] = true
	}
	return m
}

// flagWords says what a set of flag changes did, as a phrase.
func flagWords(fcs []flagChange, removedKeys map[string]bool) string {
	var n int
	var added, removed map[imap.Flag]int = map[imap.Flag]int{}, map[imap.Flag]int{}
	for _, fc := range fcs {
		if removedKeys[fc.Key] || fc.Before == nil && fc.After == nil {
			continue
		}
		n++
		b, a := flagSet(fc.Before), flagSet(fc.After)
		for f := range a {
			if !b[f] {
				added[f]++
			}
		}
		for f := range b {
			if !a[f] {
				removed[f]++
			}
		}
	}
	if n == 0 {
		return ""
	}
	msgs := plural(n, "message", "messages")
	if len(added)+len(removed) == 1 {
		for f := range added {
			switch f {
			case imap.FlagSeen:
				return msgs + " marked as read"
			case imap.FlagFlagged:
				return msgs + " flagged"
			case imap.FlagDeleted:
				return msgs + " marked for deletion"
			case imap.FlagAnswered:
				return msgs + " answered"
			}
			return fmt.Sprintf("%s marked %s", msgs, f)
		}
		for f := range removed {
			switch f {
			case imap.FlagSeen:
				return msgs + " marked as unread"
			case imap.FlagFlagged:
				return msgs + " unflagged"
			case imap.FlagDeleted:
				return msgs + " no longer marked for deletion"
			}
			return fmt.Sprintf("%s no longer %s", msgs, f)
		}
	}
	return "flags changed on " + msgs
}

func quote(s string) string {
	if len([]rune(s)) > 60 {
		s = string([]rune(s)[:57]) + "…"
	}
	return "“" + s + "”"
}

func (h *historian) describeMail(c store.CommitInfo, ch []store.Change) (description, error) {
	var d description
	parent := parentOf(c)
	boxes := groupMail(ch)
	proto, _ := protocolOf(c.Message)
	// A message removed from one mailbox and added to another in the same
	// commit is a move.
	var removedFrom, addedTo []*mailBox
	for _, b := range boxes {
		if len(b.removed) > 0 {
			removedFrom = append(removedFrom, b)
		}
		if len(b.added) > 0 {
			addedTo = append(addedTo, b)
		}
	}
	moved := strings.Contains(c.Message, "mail: move from ") && len(removedFrom) == 1 && len(addedTo) == 1 && removedFrom[0] != addedTo[0]
	var created []string
	for _, b := range boxes {
		name := h.boxName(b.id, c.Hash, parent)
		d.folders = append(d.folders, "mail/"+name)
		if b.info != nil {
			switch b.info.Action() {
			case "add":
				created = append(created, quote(name))
			case "delete":
				d.words = append(d.words, "mailbox "+quote(name)+" deleted")
			default:
				if oldName := h.infoName(b.info.From); oldName != "" && oldName != name {
					d.words = append(d.words, "mailbox "+quote(oldName)+" renamed to "+quote(name))
				}
			}
		}
		removedKeys := map[string]bool{}
		for _, k := range b.removed {
			removedKeys[k] = true
		}
		if len(b.added) > 0 {
			var what string
			if len(b.added) == 1 {
				if s := h.subjectOf(c.Hash, b.id, b.added[0]); s != "" {
					what = "message " + quote(s)
				}
			}
			if what == "" {
				what = plural(len(b.added), "message", "messages")
			}
			verb := "added to"
			switch {
			case moved:
				verb = "moved from " + quote(h.boxName(removedFrom[0].id, c.Hash, parent)) + " to"
			case strings.Contains(proto, "SMTP") || strings.HasPrefix(c.Message, "mail queue:"):
				verb = "arrived in"
				if len(b.added) == 1 && what != "1 message" {
					verb = "arrived in"
				}
			case strings.Contains(c.Message, "mail: copy from "):
				verb = "copied to"
			case strings.HasPrefix(c.Message, "console: ") || strings.HasPrefix(c.Message, "api: "):
				verb = "restored to"
			}
			d.words = append(d.words, fmt.Sprintf("%s %s %s", what, verb, name))
		}
		if len(b.removed) > 0 && !moved {
			var what string
			if len(b.removed) == 1 {
				if s := h.subjectOf(parent, b.id, b.removed[0]); s != "" {
					what = "message " + quote(s)
				}
			}
			if what == "" {
				what = plural(len(b.removed), "message", "messages")
			}
			d.words = append(d.words, fmt.Sprintf("%s deleted from %s", what, name))
		}
		if len(b.flags) > 0 {
			if w := flagWords(h.flagChanges(b.flags), removedKeys); w != "" {
				d.words = append(d.words, w+" in "+name)
			}
		}
	}
	switch len(created) {
	case 0:
	case 1:
		d.words = append([]string{"mailbox " + created[0] + " created"}, d.words...)
	default:
		sort.Strings(created)
		d.words = append([]string{"mailboxes " + strings.Join(created, ", ") + " created"}, d.words...)
	}
	if len(d.words) == 0 {
		d.words = append(d.words, "mail bookkeeping")
	}
	return d, nil
}

func (h *historian) infoName(blob store.Hash) string {
	if blob.IsZero() {
		return ""
	}
	data, err := h.st.ReadBlob(blob)
	if err != nil {
		return ""
	}
	var i mailstore.MailboxInfo
	if jsonUnmarshal(data, &i) != nil {
		return ""
	}
	return i.Name
}

// davPath is what a path under a DAV service's user folder names.
type davPath struct {
	coll string // collection path ("default", "a/b")
	obj  string // object name ("" for the collection's props)
	kind string // "obj", "props", "deadprops", "home"
}

func parseDAVPath(service, user, p string) (davPath, bool) {
	rest, ok := strings.CutPrefix(p, service+"/"+user+"/")
	if !ok {
		return davPath{}, false
	}
	if rest == "home.json" {
		return davPath{kind: "home"}, true
	}
	var coll []string
	for {
		seg, r, ok := strings.Cut(rest, "/")
		if !ok || seg != "c" {
			return davPath{}, false
		}
		name, r2, ok := strings.Cut(r, "/")
		if !ok {
			return davPath{}, false
		}
		coll = append(coll, name)
		rest = r2
		if rest == "props.json" {
			return davPath{coll: strings.Join(coll, "/"), kind: "props"}, true
		}
		if strings.HasPrefix(rest, "o/") || strings.HasPrefix(rest, "p/") {
			k := "obj"
			if rest[0] == 'p' {
				k = "deadprops"
			}
			return davPath{coll: strings.Join(coll, "/"), obj: store.Unshard(rest[2:]), kind: k}, true
		}
	}
}

// collName is a collection's display name (its path when it has none).
func (h *historian) collName(service string, coll string, at ...store.Hash) string {
	key := service + "/" + coll
	if n, ok := h.collNames[key]; ok {
		return n
	}
	for _, c := range at {
		if c.IsZero() {
			continue
		}
		data, err := h.read(c, davCollDir(service, h.user, coll)+"/props.json")
		if err != nil {
			continue
		}
		var p struct {
			DisplayName string `json:"displayname"`
		}
		if jsonUnmarshal(data, &p) == nil && p.DisplayName != "" {
			h.collNames[key] = p.DisplayName
			return p.DisplayName
		}
		break
	}
	h.collNames[key] = coll
	return coll
}

// ObjectChange is one DAV object added, removed or changed.
type ObjectChange struct {
	Service    string        `json:"service"`
	Collection string        `json:"collection"`
	Name       string        `json:"name"`
	Action     string        `json:"action"`
	Kind       string        `json:"kind"`
	Title      string        `json:"title"`
	Fields     []FieldChange `json:"fields,omitempty"`
	From       string        `json:"from,omitempty"`
	To         string        `json:"to,omitempty"`
}

func (h *historian) objectChange(service string, dp davPath, c store.Change) ObjectChange {
	oc := ObjectChange{Service: service, Collection: dp.coll, Name: dp.obj, Action: c.Action()}
	var before, after []prop
	if !c.From.IsZero() {
		oc.From = c.From.String()
		if data, err := h.st.ReadBlob(c.From); err == nil {
			before = parseProps(data)
		}
	}
	if !c.To.IsZero() {
		oc.To = c.To.String()
		if data, err := h.st.ReadBlob(c.To); err == nil {
			after = parseProps(data)
		}
	}
	oc.Kind, oc.Title = objectName(after)
	if oc.Title == "" {
		oc.Kind, oc.Title = objectName(before)
	}
	if oc.Title == "" {
		oc.Title = dp.obj
	}
	oc.Fields = diffProps(before, after)
	return oc
}

func (oc ObjectChange) words(collName string) string {
	what := oc.Kind + " " + quote(oc.Title)
	switch oc.Action {
	case "add":
		return what + " added to " + collName
	case "delete":
		return what + " deleted from " + collName
	}
	var labels []string
	for _, f := range oc.Fields {
		if f.Label == "start" && oc.Kind == "event" && f.After != "" {
			return what + " moved to " + humanDate(f.After)
		}
		labels = append(labels, f.Label)
	}
	if len(labels) == 0 {
		return what + " saved without changes"
	}
	if len(labels) > 3 {
		labels = append(labels[:3], "more")
	}
	return what + ": " + strings.Join(labels, ", ") + " changed"
}

// humanDate writes an iCalendar date or date-time value for people.
func humanDate(v string) string {
	v = strings.SplitN(v, " (", 2)[0]
	for _, l := range []struct{ layout, out string }{
		{"20060102T150405Z", "Monday 2 Jan 2006 15:04 UTC"},
		{"20060102T150405", "Monday 2 Jan 2006 15:04"},
		{"20060102", "Monday 2 Jan 2006"},
	} {
		if t, err := time.Parse(l.layout, v); err == nil {
			return t.Format(l.out)
		}
	}
	return v
}

func (h *historian) describeDAV(service string, c store.CommitInfo, ch []store.Change) (description, error) {
	var d description
	parent := parentOf(c)
	type coll struct {
		objs  []ObjectChange
		props *store.Change
	}
	colls := map[string]*coll{}
	var order []string
	for _, x := range ch {
		dp, ok := parseDAVPath(service, h.user, x.Path)
		if !ok || dp.kind == "home" || dp.kind == "deadprops" {
			continue
		}
		cl := colls[dp.coll]
		if cl == nil {
			cl = &coll{}
			colls[dp.coll] = cl
			order = append(order, dp.coll)
		}
		switch dp.kind {
		case "props":
			x := x
			cl.props = &x
		case "obj":
			if len(cl.objs) < 4 {
				cl.objs = append(cl.objs, h.objectChange(service, dp, x))
			} else {
				cl.objs = append(cl.objs, ObjectChange{Action: x.Action()})
			}
		}
	}
	noun := map[string]string{ServiceContacts: "address book", ServiceCalendar: "calendar"}[service]
	for _, k := range order {
		cl := colls[k]
		name := h.collName(service, k, c.Hash, parent)
		d.folders = append(d.folders, service+"/"+k)
		if cl.props != nil {
			switch cl.props.Action() {
			case "add":
				d.words = append(d.words, noun+" "+quote(name)+" created")
			case "delete":
				d.words = append(d.words, noun+" "+quote(name)+" deleted")
			default:
				d.words = append(d.words, noun+" "+quote(name)+": settings changed")
			}
		}
		if len(cl.objs) <= 3 {
			for _, oc := range cl.objs {
				d.words = append(d.words, oc.words(name))
			}
			continue
		}
		counts := map[string]int{}
		for _, oc := range cl.objs {
			counts[oc.Action]++
		}
		item := map[string][2]string{ServiceContacts: {"contact", "contacts"}, ServiceCalendar: {"item", "items"}}[service]
		for _, a := range []struct{ action, verb string }{{"add", "added to"}, {"modify", "changed in"}, {"delete", "deleted from"}} {
			if n := counts[a.action]; n > 0 {
				d.words = append(d.words, plural(n, item[0], item[1])+" "+a.verb+" "+name)
			}
		}
	}
	if len(d.words) == 0 {
		d.words = append(d.words, service+" set up")
	}
	return d, nil
}

func (h *historian) describeAccount(c store.CommitInfo, ch []store.Change) description {
	d := description{folders: []string{"account"}}
	subject := c.Subject()
	switch {
	case strings.HasPrefix(subject, "user add "):
		d.words = []string{"account created"}
	case strings.HasPrefix(subject, "user passwd "):
		d.words = []string{"password changed"}
	case strings.HasPrefix(subject, "user quota "):
		d.words = []string{"quota changed"}
	case strings.HasPrefix(subject, "user git "):
		d.words = []string{"git access changed"}
	case strings.HasPrefix(subject, "user del "):
		d.words = []string{"account deleted"}
	default:
		d.words = []string{"account record changed"}
	}
	return d
}
