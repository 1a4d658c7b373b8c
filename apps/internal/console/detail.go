package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// MessageView is a message as the console lists it.
type MessageView struct {
	Key     string      `json:"key"`
	UID     uint32      `json:"uid,omitempty"`
	Subject string      `json:"subject"`
	From    string      `json:"from"`
	Date    time.Time   `json:"date,omitzero"`
	Size    int64       `json:"size"`
	Flags   []imap.Flag `json:"flags"`
	// Rev is a revision that holds the message (to read it).
	Rev string `json:"rev,omitempty"`
}

func messageView(m mailstore.StoredMessage) MessageView {
	v := MessageView{Key: m.Key, UID: uint32(m.UID), Date: m.Date, Size: m.Size, Flags: m.Flags}
	if v.Flags == nil {
		v.Flags = []imap.Flag{}
	}
	if m.Summary != nil && m.Summary.Envelope != nil {
		env := m.Summary.Envelope
		v.Subject = env.Subject
		if len(env.From) > 0 {
			f := env.From[0]
			v.From = f.Addr()
			if f.Name != "" {
				v.From = f.Name + " <" + f.Addr() + ">"
			}
		}
		if !env.Date.IsZero() {
			v.Date = env.Date
		}
	}
	return v
}

// MailboxChange is what one change did to one mailbox.
type MailboxChange struct {
	Mailbox string          `json:"mailbox"`
	Created bool            `json:"created,omitempty"`
	Deleted bool            `json:"deleted,omitempty"`
	Renamed string          `json:"renamed_from,omitempty"`
	Added   []MessageView   `json:"added,omitempty"`
	Removed []MessageView   `json:"removed,omitempty"`
	Flags   []FlagChangeOut `json:"flags,omitempty"`
}

// FlagChangeOut is one message's flags before and after.
type FlagChangeOut struct {
	Message MessageView `json:"message"`
	Before  []imap.Flag `json:"before"`
	After   []imap.Flag `json:"after"`
}

// Detail is one change opened.
type Detail struct {
	Entry
	Message string          `json:"message"`
	Mail    []MailboxChange `json:"mail,omitempty"`
	Objects []ObjectChange  `json:"objects,omitempty"`
	Account []string        `json:"account,omitempty"`
}

// maxDetailItems bounds the messages and objects a detail lists.
const maxDetailItems = 500

// commit finds a commit by revision; one that does not exist is a 404.
func (h *historian) commit(rev string) (store.CommitInfo, error) {
	hash, err := h.st.Resolve(rev)
	if err != nil {
		return store.CommitInfo{}, &httpError{404, fmt.Sprintf("no revision %q", rev)}
	}
	infos, err := h.st.Log(store.LogOptions{Rev: hash.String(), Limit: 1})
	if err != nil || len(infos) == 0 {
		return store.CommitInfo{}, &httpError{404, fmt.Sprintf("no revision %q", rev)}
	}
	return infos[0], nil
}

// detail describes one commit for the user: 404 when it does not exist
// or did not change the user's data.
func (h *historian) detail(rev string) (*Detail, error) {
	c, err := h.commit(rev)
	if err != nil {
		return nil, err
	}
	scopes, _ := h.scopes(filter{})
	e, ok, err := h.entry(c, scopes)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &httpError{404, fmt.Sprintf("revision %s changed none of %s's data", short(c.Hash), h.user)}
	}
	d := &Detail{Entry: e, Message: c.Message}
	byService, err := h.changesOf(c, scopes)
	if err != nil {
		return nil, err
	}
	parent := parentOf(c)
	if ch := byService[ServiceMail]; len(ch) > 0 {
		d.Mail = h.mailDetail(c, parent, ch)
	}
	for _, s := range []string{ServiceContacts, ServiceCalendar} {
		n := 0
		for _, x := range byService[s] {
			dp, ok := parseDAVPath(s, h.user, x.Path)
			if !ok || dp.kind != "obj" {
				continue
			}
			if n++; n > maxDetailItems {
				break
			}
			oc := h.objectChange(s, dp, x)
			d.Objects = append(d.Objects, oc)
		}
	}
	if len(byService[ServiceAccount]) > 0 {
		d.Account = h.describeAccount(c, byService[ServiceAccount]).words
	}
	return d, nil
}

func short(h store.Hash) string { return h.String()[:12] }

func (h *historian) storedMessage(at store.Hash, box, key string) mailstore.StoredMessage {
	m := mailstore.StoredMessage{Key: key}
	if at.IsZero() {
		return m
	}
	sn, err := h.st.SnapshotOf(at)
	if err != nil {
		return m
	}
	data, err := sn.Read(mailstore.MessagePath(sn, h.user, box, key, "meta"))
	if err != nil {
		return m
	}
	if sm, err := mailstore.ReadMeta(data); err == nil {
		sm.Key = key
		return sm
	}
	return m
}

func (h *historian) mailDetail(c store.CommitInfo, parent store.Hash, ch []store.Change) []MailboxChange {
	var out []MailboxChange
	for _, b := range groupMail(ch) {
		mc := MailboxChange{Mailbox: h.boxName(b.id, c.Hash, parent)}
		if b.info != nil {
			switch b.info.Action() {
			case "add":
				mc.Created = true
			case "delete":
				mc.Deleted = true
			default:
				if n := h.infoName(b.info.From); n != mc.Mailbox {
					mc.Renamed = n
				}
			}
		}
		for i, k := range b.added {
			if i >= maxDetailItems {
				break
			}
			v := messageView(h.storedMessage(c.Hash, b.id, k))
			v.Rev = c.Hash.String()
			mc.Added = append(mc.Added, v)
		}
		removed := map[string]bool{}
		for i, k := range b.removed {
			removed[k] = true
			if i >= maxDetailItems {
				continue
			}
			v := messageView(h.storedMessage(parent, b.id, k))
			v.Rev = parent.String()
			mc.Removed = append(mc.Removed, v)
		}
		for i, fc := range h.flagChanges(b.flags) {
			if i >= maxDetailItems {
				break
			}
			if removed[fc.Key] || fc.Before == nil && fc.After == nil {
				continue
			}
			v := messageView(h.storedMessage(c.Hash, b.id, fc.Key))
			v.Rev = c.Hash.String()
			before, after := fc.Before, fc.After
			if before == nil {
				before = []imap.Flag{}
			}
			if after == nil {
				after = []imap.Flag{}
			}
			mc.Flags = append(mc.Flags, FlagChangeOut{Message: v, Before: before, After: after})
		}
		out = append(out, mc)
	}
	return out
}

// atTime finds the newest commit made at or before t (404 if none).
func (h *historian) atTime(t time.Time) (store.CommitInfo, error) {
	rev := ""
	for {
		infos, err := h.st.Log(store.LogOptions{Rev: rev, Limit: 257})
		if err != nil {
			return store.CommitInfo{}, err
		}
		for i, c := range infos {
			if i == 256 {
				break
			}
			if !c.When.After(t) {
				return c, nil
			}
		}
		if len(infos) < 257 {
			return store.CommitInfo{}, &httpError{404, fmt.Sprintf("no change at or before %s", t.Format(time.RFC3339))}
		}
		rev = infos[256].Hash.String()
	}
}

// httpError is an error with the HTTP status to answer it with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	switch {
	case errors.Is(err, store.ErrNotExist), errors.Is(err, mailstore.ErrNoMailbox):
		return 404
	case errors.Is(err, store.ErrConflict):
		return 409
	}
	return 500
}

// cleanFolder checks a folder name given by a client.
func cleanFolder(f string) (string, error) {
	f = strings.Trim(f, "/")
	if strings.Contains(f, "..") || strings.ContainsAny(f, "\x00\\") {
		return "", &httpError{400, fmt.Sprintf("bad folder name %q", f)}
	}
	return f, nil
}
