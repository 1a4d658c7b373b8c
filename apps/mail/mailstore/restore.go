package mailstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

// What a commit of the store holds, read without the index: the web
// console's history, field-level changes and restores (apps/internal/console)
// read old revisions through these, and put old messages back through
// AppendStored and RestoreMailbox, which go through the index like any
// other write, so that IMAP sessions (IDLE) see a restore at once.

// PathInfo is what a store path under Prefix names.
type PathInfo struct {
	User string
	// Box is the mailbox id ("" for the user's subscriptions).
	Box string
	// Kind is "info" (mailbox.json), "eml", "meta", "flags" or "subs".
	Kind string
	// Key is the message's key for "eml" and "meta".
	Key string
	// Layout is the layout whose folders an "eml" or "meta" item's path
	// has (Layout16 or Layout256).
	Layout int
}

// ParsePath says what a store path under Prefix names; ok is false for a
// path that is not mail.
func ParsePath(p string) (pi PathInfo, ok bool) {
	rest, ok := strings.CutPrefix(p, Prefix+"/")
	if !ok {
		return pi, false
	}
	user, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return pi, false
	}
	pi.User = user
	if rest == "subscriptions" {
		pi.Kind = "subs"
		return pi, true
	}
	id, sub, ok := strings.Cut(rest, "/")
	if !ok {
		return pi, false
	}
	pi.Box = id
	switch {
	case sub == "mailbox.json":
		pi.Kind = "info"
	case isChunkPath(sub):
		pi.Kind = "flags"
	default:
		key, ext := splitMsgPath(sub)
		if key == "" || (ext != ".eml" && ext != ".meta") {
			return pi, false
		}
		pi.Key, pi.Kind, pi.Layout = key, ext[1:], itemLayout(sub)
	}
	return pi, true
}

// BoxDir is the store folder of a user's mailbox (by id).
func BoxDir(user, id string) string { return boxDir(user, id) }

// UserDir is the store folder of a user's mail.
func UserDir(user string) string { return userDir(user) }

// MessagePath is the store path of a message's raw content ("eml") or
// record ("meta") in snapshot sn, in either layout (Layout16's path when
// sn holds neither).
func MessagePath(sn *store.Snapshot, user, box, key, kind string) string {
	base, _, _ := findMsg(sn.Exists, user, box, Layout16, key, "."+kind)
	return base + "." + kind
}

// LayoutPath is the store path of a message's raw content ("eml") or
// record ("meta") in layout l (Layout16 or Layout256).
func LayoutPath(l int, user, box, key, kind string) string {
	return msgBase(user, box, l, key) + "." + kind
}

// StoredMessage is a message as a commit holds it.
type StoredMessage struct {
	Key     string      `json:"key"`
	UID     imap.UID    `json:"uid"`
	Date    time.Time   `json:"date"`
	Size    int64       `json:"size"`
	Flags   []imap.Flag `json:"flags"`
	Blob    store.Hash  `json:"-"`
	Summary *Summary    `json:"-"`
}

// StoredMailbox is a mailbox as a commit holds it.
type StoredMailbox struct {
	ID   string
	Info MailboxInfo
	// Messages are sorted by UID (nil unless asked for).
	Messages []StoredMessage
}

// ReadMailboxes lists a user's mailboxes at sn, without their messages,
// sorted by name.
func ReadMailboxes(sn *store.Snapshot, user string) ([]StoredMailbox, error) {
	ents, err := sn.ReadDir(userDir(user))
	if errors.Is(err, store.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []StoredMailbox
	for _, e := range ents {
		if !e.Dir {
			continue
		}
		id := e.Path[strings.LastIndexByte(e.Path, '/')+1:]
		info, err := ReadMailboxInfo(sn, user, id)
		if errors.Is(err, store.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, StoredMailbox{ID: id, Info: info})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info.Name < out[j].Info.Name })
	return out, nil
}

// ReadMailboxInfo reads a mailbox's mailbox.json at sn.
func ReadMailboxInfo(sn *store.Snapshot, user, id string) (MailboxInfo, error) {
	var info MailboxInfo
	data, err := sn.Read(boxInfoPath(user, id))
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return info, fmt.Errorf("mailstore: %s: %w", boxInfoPath(user, id), err)
	}
	return info, nil
}

// FindStoredMailbox finds a user's mailbox by name at sn (ErrNoMailbox when
// there is none).
func FindStoredMailbox(sn *store.Snapshot, user, name string) (StoredMailbox, error) {
	boxes, err := ReadMailboxes(sn, user)
	if err != nil {
		return StoredMailbox{}, err
	}
	name = NormName(name)
	for _, b := range boxes {
		if b.Info.Name == name {
			return b, nil
		}
	}
	return StoredMailbox{}, fmt.Errorf("%w: %q", ErrNoMailbox, name)
}

// ReadMeta reads the record of a message from its .meta content.
func ReadMeta(data []byte) (StoredMessage, error) {
	var m msgMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return StoredMessage{}, err
	}
	return StoredMessage{UID: m.UID, Date: m.Date, Size: m.Size, Summary: m.Summary}, nil
}

// ReadChunk reads a flags chunk: flags by message key.
func ReadChunk(data []byte) map[string][]imap.Flag {
	out := map[string][]imap.Flag{}
	for _, l := range parseChunk(data) {
		out[l.key] = l.flags
	}
	return out
}

// ReadMailboxMessages reads the messages of mailbox id at sn, sorted by UID.
func ReadMailboxMessages(sn *store.Snapshot, user, id string) ([]StoredMessage, error) {
	dir := boxDir(user, id)
	ents, err := sn.List(dir)
	if err != nil {
		return nil, err
	}
	byKey := map[string]*StoredMessage{}
	emls := map[string]store.Hash{}
	var metas, chunks []store.Entry
	for _, e := range ents {
		sub := strings.TrimPrefix(e.Path, dir+"/")
		if isChunkPath(sub) {
			chunks = append(chunks, e)
			continue
		}
		key, ext := splitMsgPath(sub)
		switch ext {
		case ".eml":
			emls[key] = e.Hash
		case ".meta":
			metas = append(metas, e)
		}
	}
	out := make([]StoredMessage, 0, len(metas))
	for _, e := range metas {
		key, _ := splitMsgPath(strings.TrimPrefix(e.Path, dir+"/"))
		blob, ok := emls[key]
		if !ok {
			continue
		}
		data, err := sn.Read(e.Path)
		if err != nil {
			return nil, err
		}
		m, err := ReadMeta(data)
		if err != nil {
			continue // as loadUser: a damaged record is skipped
		}
		m.Key, m.Blob = key, blob
		out = append(out, m)
	}
	for i := range out {
		byKey[out[i].Key] = &out[i]
	}
	for _, e := range chunks {
		data, err := sn.Read(e.Path)
		if err != nil {
			return nil, err
		}
		for _, l := range parseChunk(data) {
			if m := byKey[l.key]; m != nil {
				m.Flags = l.flags
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out, nil
}

// MailboxByID finds a mailbox of the index by its id.
func (u *User) MailboxByID(id string) (*Mailbox, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	mb, ok := u.boxes[id]
	return mb, ok
}

// Messages returns the mailbox's messages, sorted by UID.
func (mb *Mailbox) Messages() []*Message {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	return append([]*Message(nil), mb.msgs...)
}

// Blob is the hash of the message's raw content in the store.
func (m *Message) Blob() store.Hash { return m.blob }

// AppendStored adds to mb a copy of m, a message from the store's history
// (it may have been expunged since), with its flags and internal date and a
// new UID, by the hash of its content: nothing is read or copied. Quota
// applies as to any message.
func (w *Writer) AppendStored(mb *Mailbox, m StoredMessage) (imap.UID, error) {
	if m.Blob.IsZero() {
		return 0, fmt.Errorf("mailstore: restore of message %s: no content hash", m.Key)
	}
	c := m.Summary
	if c == nil {
		raw, err := w.s.st.ReadBlob(m.Blob)
		if err != nil {
			return 0, err
		}
		c = Parse(raw)
	}
	w.blob = m.Blob
	return w.appendMessage(mb, m.Size, m.Flags, m.Date, c, func(path string) (store.Hash, error) {
		return m.Blob, w.tx.PutHash(path, m.Blob)
	}, nil)
}

// RestoreResult counts what RestoreMailbox changed.
type RestoreResult struct {
	Added, Expunged, Reflagged int
}

// RestoreMailbox makes mb hold what old held (a mailbox as a commit had
// it, with its messages): messages that were there and are not any more
// come back (AppendStored: new UIDs, as IMAP requires for messages that
// appear), messages that were not there are expunged, and flags go back to
// what they were. A message counts as there when its key or its content
// is: restoring twice to the same point changes nothing the second time.
func (w *Writer) RestoreMailbox(mb *Mailbox, old []StoredMessage) (RestoreResult, error) {
	var res RestoreResult
	cur := mb.Messages()
	byKey := make(map[string]*Message, len(cur))
	byBlob := make(map[store.Hash][]*Message, len(cur))
	for _, m := range cur {
		byKey[m.Key] = m
		byBlob[m.blob] = append(byBlob[m.blob], m)
	}
	oldKeys := make(map[string]bool, len(old))
	for _, o := range old {
		oldKeys[o.Key] = true
	}
	keep := make(map[*Message]bool, len(old))
	var missing []StoredMessage
	for _, o := range old {
		m := byKey[o.Key]
		if m == nil || keep[m] {
			m = nil
			for _, c := range byBlob[o.Blob] {
				if !keep[c] && byKey[c.Key] == c {
					if !oldKeys[c.Key] {
						m = c
						break
					}
				}
			}
		}
		if m == nil {
			missing = append(missing, o)
			continue
		}
		keep[m] = true
		if !slices.Equal(normFlags(o.Flags), mb.Flags(m)) {
			if err := w.SetFlags(mb, m, o.Flags, nil); err != nil {
				return res, err
			}
			res.Reflagged++
		}
	}
	for _, m := range cur {
		if !keep[m] {
			if err := w.Expunge(mb, m); err != nil {
				return res, err
			}
			res.Expunged++
		}
	}
	for _, o := range missing {
		if _, err := w.AppendStored(mb, o); err != nil {
			return res, err
		}
		res.Added++
	}
	return res, nil
}
