package mailstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

// Writer makes the writes of one commit (see Store.Update). Its methods
// write to the transaction at once and change the index only after the
// commit is durable.
type Writer struct {
	s     *Store
	tx    *store.Tx
	apply []func()
	infos map[*Mailbox]*MailboxInfo
	made  []*Mailbox // created in this commit

	// Flags chunks to write when fn returns, and what this commit did to
	// the messages in them.
	dirty map[*Mailbox]map[uint32]map[*Message]bool
	flags map[*Message][]imap.Flag
	added map[*Mailbox][]*Message
	gone  map[*Message]bool

	// What this commit adds to each user's usage, and the users' quotas
	// as read once per commit (see quota.go).
	usage   map[*User]Usage
	quotas  map[*User]store.Quota
	noQuota bool // set by AppendNotice

	subs map[*User]map[string]bool // see subscriptions.go

	modseqs map[*Mailbox]uint64 // see modSeq

	// Lines for the mailboxes' space files (local.go), written before the
	// commit; sync is set if they must be durable by then.
	local map[*Mailbox][]string
	sync  bool
	ceil  map[*Mailbox]imap.UID // UID ceilings written by this commit

	key  string     // the key of the next append if not "" (Move)
	blob store.Hash // the content's hash of the next append (contentKey)
	copy bool       // the next append is a COPY (contentKey)
}

// contentKey is the key of a message with content blob appended to mb:
// made from the content and the number of messages with that key that mb
// holds already, so that the same message appended to one mailbox on two
// nodes apart has one key on both, and so is one message when they merge
// (a second append of it on one node is a second message). A COPY's key
// is made apart from an append's ("/copy/n"): a copy is another message
// than the original, and a flags line of the original that a merge leaves
// stray (the original expunged here, flagged on another node) must not
// reach it (resyncStrays folds a stray line into the message that holds
// its key elsewhere, which only a MOVE's copy does); the same COPY on two
// nodes apart is still one message. A zero blob gets a random key.
func (w *Writer) contentKey(mb *Mailbox, blob store.Hash, copied bool) string {
	if blob.IsZero() {
		return newKey()
	}
	format := "/%d"
	if copied {
		format = "/copy/%d"
	}
	for n := 0; ; n++ {
		sum := sha256.Sum256(fmt.Appendf(blob[:len(blob):len(blob)], format, n))
		if key := hex.EncodeToString(sum[:10]); !w.holds(mb, key) {
			return key
		}
	}
}

// holds reports whether mb has a message with key, in the index or added
// by this commit (and not expunged by it).
func (w *Writer) holds(mb *Mailbox, key string) bool {
	mb.mu.RLock()
	m := mb.byKey.get(key)
	mb.mu.RUnlock()
	if m != nil && !w.gone[m] {
		return true
	}
	return w.isAdded(mb, key)
}

// logLocal notes a line for mb's space file.
func (w *Writer) logLocal(mb *Mailbox, line string, sync bool) {
	if w.local == nil {
		w.local = map[*Mailbox][]string{}
	}
	w.local[mb] = append(w.local[mb], line)
	w.sync = w.sync || sync
}

// writeLocal writes the lines noted for the space files.
func (w *Writer) writeLocal() error {
	for mb, lines := range w.local {
		if err := w.s.logSpace(mb, lines, w.sync); err != nil {
			return err
		}
	}
	return nil
}

// touched returns the mailboxes whose trees the commit may have changed.
func (w *Writer) touched() map[*Mailbox]bool {
	m := map[*Mailbox]bool{}
	for mb := range w.dirty {
		m[mb] = true
	}
	for mb := range w.added {
		m[mb] = true
	}
	for mb := range w.infos {
		m[mb] = true
	}
	for mb := range w.local {
		m[mb] = true
	}
	for _, mb := range w.made {
		m[mb] = true
	}
	return m
}

// Tx is the underlying transaction, for writes outside mail/ (the queue).
func (w *Writer) Tx() *store.Tx { return w.tx }

func (w *Writer) info(mb *Mailbox) (*MailboxInfo, error) {
	if i := w.infos[mb]; i != nil {
		return i, nil
	}
	i := mb.Info()
	w.infos[mb] = &i
	mbx := mb
	w.apply = append(w.apply, func() {
		mbx.mu.Lock()
		if i.UIDNext > mbx.info.UIDNext {
			mbx.info.UIDNext = i.UIDNext
		}
		mbx.info.Vanished, mbx.info.VanishedFloor = i.Vanished, i.VanishedFloor
		mbx.mu.Unlock()
	})
	return &i, nil
}

// putInfo writes mailbox.json: what replicates of i (the UIDs are this
// node's, in its space file).
func (w *Writer) putInfo(mb *Mailbox, i *MailboxInfo) error {
	t := *i
	t.UIDValidity, t.UIDNext, t.RecentFrom, t.Vanished, t.VanishedFloor = mb.treeUV, 1, 0, nil, 0
	data, err := json.Marshal(&t)
	if err != nil {
		return err
	}
	return w.tx.Put(boxInfoPath(mb.user.Name, mb.ID), data)
}

// ValidName checks a mailbox name.
func ValidName(name string) error {
	switch {
	case name == "", !utf8.ValidString(name), strings.ContainsAny(name, "\x00\r\n"),
		strings.HasPrefix(name, string(Delim)), strings.Contains(name, string(Delim)+string(Delim)),
		len(name) > 512, strings.ContainsAny(name, "*%"):
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	return nil
}

func (w *Writer) findByName(u *User, name string) *Mailbox {
	for _, mb := range w.made {
		if mb.user == u && mb.info.Name == name {
			return mb
		}
	}
	mb, _ := u.Mailbox(name)
	return mb
}

// Create makes a mailbox with an optional special use.
func (w *Writer) Create(u *User, name string, use imap.MailboxAttr) (*Mailbox, error) {
	return w.create(u, name, use, newKey()[:12])
}

// create makes mailbox name with the given id.
func (w *Writer) create(u *User, name string, use imap.MailboxAttr, id string) (*Mailbox, error) {
	name = NormName(name)
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if w.findByName(u, name) != nil {
		return nil, fmt.Errorf("%w: %q", ErrMailboxExists, name)
	}
	// UIDVALIDITY: the time, and above every mailbox's, so that a mailbox
	// deleted and created again never has the same one.
	uv := uint32(time.Now().Unix())
	for _, mb := range append(u.Mailboxes(), w.made...) {
		if v := mb.Info().UIDValidity; v >= uv {
			uv = v + 1
		}
	}
	uv = u.takeUIDValidity(uv)
	mb := &Mailbox{ID: id, user: u, treeUV: uv}
	mb.info = MailboxInfo{Name: name, UIDValidity: uv, UIDNext: 1, Subscribed: true, RecentFrom: 1, Layout: Layout16}
	if use != "" {
		mb.info.SpecialUse = []imap.MailboxAttr{use}
	}
	mb.recentFrom = 1
	mb.loc = newSpace(mb)
	if err := w.s.compactSpace(mb); err != nil {
		return nil, err
	}
	if err := w.putInfo(mb, &mb.info); err != nil {
		return nil, err
	}
	// A name subscribed without a mailbox is now this mailbox's.
	if err := w.setSubscribedOnly(u, name, false); err != nil {
		return nil, err
	}
	w.made = append(w.made, mb)
	w.apply = append(w.apply, func() {
		u.mu.Lock()
		u.boxes[mb.ID] = mb
		u.mu.Unlock()
	})
	return mb, nil
}

// Delete removes a mailbox and its messages.
func (w *Writer) Delete(mb *Mailbox) error {
	if mb.Name() == "INBOX" {
		return fmt.Errorf("%w: INBOX cannot be deleted", ErrBadName)
	}
	entries, err := w.tx.List(boxDir(mb.user.Name, mb.ID))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := w.tx.Delete(e.Path); err != nil {
			return err
		}
	}
	w.use(mb.user, mb.usage().neg())
	// The subscription stays (RFC 3501 6.3.6).
	if i, err := w.info(mb); err != nil {
		return err
	} else if i.Subscribed {
		if err := w.setSubscribedOnly(mb.user, i.Name, true); err != nil {
			return err
		}
	}
	w.apply = append(w.apply, func() {
		mb.user.mu.Lock()
		delete(mb.user.boxes, mb.ID)
		mb.user.mu.Unlock()
		w.s.closeSpace(mb, true)
	})
	return nil
}

// SetInfo changes a mailbox's name or subscription (UIDs are left alone).
func (w *Writer) SetInfo(mb *Mailbox, fn func(i *MailboxInfo)) error {
	i, err := w.info(mb)
	if err != nil {
		return err
	}
	fn(i)
	if err := w.putInfo(mb, i); err != nil {
		return err
	}
	ic := *i
	w.apply = append(w.apply, func() {
		mb.mu.Lock()
		mb.info.Name, mb.info.Subscribed, mb.info.SpecialUse = ic.Name, ic.Subscribed, ic.SpecialUse
		mb.mu.Unlock()
	})
	return nil
}

// Append adds a message to mb and returns its UID. A message over the
// user's quota is refused with a QuotaError.
func (w *Writer) Append(mb *Mailbox, raw []byte, flags []imap.Flag, date time.Time) (imap.UID, error) {
	return w.appendCached(mb, raw, flags, date, nil)
}

// AppendNotice is Append without the quota check, for the mail system's
// own small notices to a user (a bounce of the user's own mail, see the
// queue), which must reach them even when their mailbox is full; it still
// stops at the store's reserve of disk space.
func (w *Writer) AppendNotice(mb *Mailbox, raw []byte) (imap.UID, error) {
	w.noQuota = true
	defer func() { w.noQuota = false }()
	return w.appendCached(mb, raw, nil, time.Time{}, nil)
}

// AppendSpool adds the message held in sp (a file on the data disk, see
// store.Spool) to mb and returns its UID, without reading the message into
// memory: it is parsed and stored by streaming from the file. sp must stay
// open until Update returns.
func (w *Writer) AppendSpool(mb *Mailbox, sp *store.Spool, flags []imap.Flag, date time.Time) (imap.UID, error) {
	h, err := sp.BlobHash()
	if err != nil {
		return 0, err
	}
	w.blob = h
	c := ParseReader(sp, sp.Size())
	return w.appendMessage(mb, sp.Size(), flags, date, c, func(path string) (store.Hash, error) {
		return w.tx.PutBlobSpool(path, sp)
	}, nil)
}

func (w *Writer) appendCached(mb *Mailbox, raw []byte, flags []imap.Flag, date time.Time, c *Summary) (imap.UID, error) {
	// New mail is data: it stops at the store's reserve.
	if err := w.s.st.CheckSpace(int64(len(raw))); err != nil {
		return 0, err
	}
	if c == nil {
		c = Parse(raw)
	}
	b := store.NewBlob(raw) // hashed once, for the key and the store
	w.blob = b.Hash()
	return w.appendMessage(mb, int64(len(raw)), flags, date, c, func(path string) (store.Hash, error) {
		return w.tx.PutBlobOf(path, b)
	}, raw)
}

// appendMessage writes a message of size bytes parsed as c, its content
// put by put; raw, if not nil, is its content for the cache.
func (w *Writer) appendMessage(mb *Mailbox, size int64, flags []imap.Flag, date time.Time, c *Summary, put func(path string) (store.Hash, error), raw []byte) (imap.UID, error) {
	i, err := w.info(mb)
	if err != nil {
		return 0, err
	}
	if date.IsZero() {
		date = time.Now()
	}
	if !w.noQuota {
		if err := w.checkQuota(mb.user, size); err != nil {
			return 0, err
		}
	}
	w.use(mb.user, Usage{Messages: 1, Bytes: size})
	flags = normFlags(flags)
	key, blob, copied := w.key, w.blob, w.copy
	w.key, w.blob, w.copy = "", store.Hash{}, false
	if key == "" || w.holds(mb, key) {
		key = w.contentKey(mb, blob, copied)
	}
	msg := &Message{Key: key, UID: i.UIDNext, home: i.UIDNext, Date: date.Round(time.Second), Size: size, flags: makeFlagList(flags)}
	msg.setMetaModSeq(w.modSeq(mb))
	i.UIDNext++
	if ceil := max(mb.loc.ceil, w.ceil[mb]); i.UIDNext > ceil {
		// The UID is only in the .meta: the space file says, durably
		// before the commit, that UIDs up to a new ceiling may be given
		// (see uidSpace).
		if w.ceil == nil {
			w.ceil = map[*Mailbox]imap.UID{}
		}
		next := i.UIDNext + ceilStep
		w.ceil[mb] = next
		w.logLocal(mb, fmt.Sprintf("u %d", next), true)
		w.apply = append(w.apply, func() { mb.loc.ceil = max(mb.loc.ceil, next) })
	}
	meta, err := json.Marshal(msgMeta{UID: msg.UID, Space: mb.loc.space, Date: msg.Date, Size: msg.Size, Summary: c, ModSeq: msg.modseq})
	if err != nil {
		return 0, err
	}
	w.s.setSummary(msg, c, meta)
	base := msgBase(mb.user.Name, mb.ID, mb.layout(), msg.Key)
	if msg.blob, err = put(base + ".eml"); err != nil {
		return 0, err
	}
	if err := w.tx.Put(base+".meta", meta); err != nil {
		return 0, err
	}
	if len(flags) > 0 {
		w.markChunk(mb, msg)
	}
	if mb.hasReadWriteView() {
		// A session will have it as \Recent (addMessage): record that
		// (not synced: a crash makes it \Recent once more at worst).
		i.RecentFrom = msg.UID + 1
		w.logLocal(mb, fmt.Sprintf("r %d", i.RecentFrom), false)
	}
	w.added[mb] = append(w.added[mb], msg)
	// Nothing is written to the space file: the .meta holds the UID and
	// this node's space.
	w.apply = append(w.apply, func() {
		if raw != nil {
			w.s.cache.put(msg.Key, raw, true)
		}
		mb.addMessage(msg)
	})
	return msg.UID, nil
}

func (mb *Mailbox) hasReadWriteView() bool {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	for _, v := range mb.views {
		if !v.readOnly {
			return true
		}
	}
	return false
}

func (mb *Mailbox) addMessage(msg *Message) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.byKey.get(msg.Key) != nil {
		return
	}
	mb.byKey.put(msg)
	mb.bytes += msg.Size
	mb.noteFlagsLocked(msg.flags.list())
	mb.noteModSeqLocked(msg.modseq)
	n := len(mb.msgs)
	if n == 0 || mb.msgs[n-1].UID < msg.UID {
		mb.msgs = append(mb.msgs, msg)
	} else {
		// Only after a merge: keep UID order.
		k := sort.Search(n, func(i int) bool { return mb.msgs[i].UID > msg.UID })
		mb.msgs = append(mb.msgs, nil)
		copy(mb.msgs[k+1:], mb.msgs[k:])
		mb.msgs[k] = msg
	}
	if msg.UID >= mb.info.UIDNext {
		mb.info.UIDNext = msg.UID + 1
	}
	// \Recent: the first session that has the mailbox selected gets it.
	if msg.UID >= mb.recentFrom {
		for _, v := range mb.views {
			if !v.readOnly {
				v.recent[msg.UID] = true
				mb.recentFrom = msg.UID + 1
				break
			}
		}
	}
	mb.queueExistsLocked(uint32(len(mb.msgs)))
}

// seqLocked is the 1-based sequence number of msg, or 0.
func (mb *Mailbox) seqLocked(msg *Message) uint32 {
	k := sort.Search(len(mb.msgs), func(i int) bool { return mb.msgs[i].UID >= msg.UID })
	if k < len(mb.msgs) && mb.msgs[k] == msg {
		return uint32(k + 1)
	}
	for i, m := range mb.msgs {
		if m == msg {
			return uint32(i + 1)
		}
	}
	return 0
}

// SetFlags replaces a message's flags. source, if not nil, is the session
// that asked (it is told by its own FETCH responses, not by its queue).
func (w *Writer) SetFlags(mb *Mailbox, msg *Message, flags []imap.Flag, source *View) error {
	flags = normFlags(flags)
	w.flags[msg] = flags
	w.markChunk(mb, msg)
	modseq := w.modSeq(mb)
	w.apply = append(w.apply, func() {
		mb.setFlags(msg, flags, modseq, source)
	})
	return nil
}

// setFlags sets a message's flags and MODSEQ (which never goes back) and
// tells the sessions.
func (mb *Mailbox) setFlags(msg *Message, flags []imap.Flag, modseq uint64, source *View) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	msg.flags = makeFlagList(flags)
	msg.modseq = max(msg.modseq, modseq)
	mb.noteModSeqLocked(msg.modseq)
	seq := mb.seqLocked(msg)
	if seq == 0 {
		return
	}
	// The source writes the new flags in its own response and is not sent
	// them again, unless an update of msg from another commit waits in its
	// queue: that older update would go out after the response and leave
	// the client with stale flags (found by TestModelConcurrentSessions),
	// so the new flags follow it through the queue too.
	skip := source
	if source != nil && source.flagsQueued[msg] {
		skip = nil
	}
	for _, v := range mb.views {
		if v != skip {
			if v.flagsQueued == nil {
				v.flagsQueued = map[*Message]bool{}
			}
			v.flagsQueued[msg] = true
		}
	}
	mb.queueFlagsLocked(seq, msg.UID, flags, skip)
}

// Expunge removes a message.
func (w *Writer) Expunge(mb *Mailbox, msg *Message) error {
	i, err := w.info(mb)
	if err != nil {
		return err
	}
	if msg.UID >= i.UIDNext {
		i.UIDNext = msg.UID + 1
	}
	i.HighestModSeq = w.modSeq(mb)
	i.addVanished(msg.UID, i.HighestModSeq)
	// UIDNEXT and the expunged UID are durable before the commit (a
	// failed commit leaves a line that load ignores: the UID is live).
	w.logLocal(mb, fmt.Sprintf("n %d", i.UIDNext), true)
	w.logLocal(mb, fmt.Sprintf("v %d %d %d", msg.UID, msg.UID, i.HighestModSeq), true)
	if mb.loc.uids[msg.Key] != 0 {
		w.logLocal(mb, "d "+msg.Key, true)
		key := msg.Key
		w.apply = append(w.apply, func() { delete(mb.loc.uids, key) })
	}
	w.gone[msg] = true
	w.use(mb.user, Usage{Messages: -1, Bytes: -msg.Size})
	w.markChunk(mb, msg)
	base, _, err := findMsg(w.tx.Exists, mb.user.Name, mb.ID, mb.layout(), msg.Key, ".meta")
	if err != nil {
		return err
	}
	for _, ext := range []string{".eml", ".meta"} {
		if err := w.tx.Delete(base + ext); err != nil {
			return err
		}
	}
	w.apply = append(w.apply, func() { mb.removeMessage(msg) })
	return nil
}

func (mb *Mailbox) removeMessage(msg *Message) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	seq := mb.seqLocked(msg)
	if seq == 0 {
		return
	}
	mb.msgs = append(mb.msgs[:seq-1], mb.msgs[seq:]...)
	mb.byKey.del(msg.Key)
	mb.bytes -= msg.Size
	mb.queueExpungeLocked(seq, msg.UID)
}

// Copy appends a copy of msg (from src) to dst, with the same flags and
// internal date, and returns its UID. The parse summary is reused.
func (w *Writer) Copy(src *Mailbox, msg *Message, dst *Mailbox) (imap.UID, error) {
	raw, err := w.s.ReadRaw(src, msg)
	if err != nil {
		return 0, err
	}
	w.copy = true
	defer func() { w.copy = false }()
	return w.appendCached(dst, raw, src.Flags(msg), msg.Date, msg.Summary())
}

// Move moves msg from src to dst (IMAP MOVE): an expunge from src and a
// copy in dst, as Expunge and Copy, except that the copy keeps the
// message's key (in another mailbox than src), so that a flag change that
// another node made meanwhile on the original follows it there when the
// nodes merge (see resyncStrays).
func (w *Writer) Move(src *Mailbox, msg *Message, dst *Mailbox) (imap.UID, error) {
	if err := w.Expunge(src, msg); err != nil {
		return 0, err
	}
	raw, err := w.s.ReadRaw(src, msg)
	if err != nil {
		return 0, err
	}
	w.key = msg.Key // (made afresh if dst holds it: a move within one mailbox)
	defer func() { w.key = "" }()
	return w.appendCached(dst, raw, w.Flags(src, msg), msg.Date, msg.Summary())
}

// Flags returns a copy of a message's flags.
func (mb *Mailbox) Flags(msg *Message) []imap.Flag {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	return append([]imap.Flag(nil), msg.flags.list()...)
}

// resync brings the index up to date with the head for the given changed
// paths (from a commit this process did not make). It converges on the
// head's content, so it is safe to repeat.
func (s *Store) resync(paths []string) (err error) {
	sn, err := s.st.Snapshot("")
	if err != nil {
		return err
	}
	type boxKey struct{ user, id string }
	infos := map[boxKey]bool{}
	msgs := map[boxKey]map[string]bool{}
	chunks := map[boxKey][]string{}
	for _, p := range paths {
		parts := strings.SplitN(p, "/", 4)
		if len(parts) == 3 && parts[0] == Prefix && parts[2] == "subscriptions" {
			s.mu.Lock()
			u := s.users[parts[1]]
			s.mu.Unlock()
			if u == nil {
				continue
			}
			data, err := sn.Read(p)
			if err != nil && !errors.Is(err, store.ErrNotExist) {
				return err
			}
			u.mu.Lock()
			u.subs = parseSubs(data)
			u.mu.Unlock()
			continue
		}
		if len(parts) < 4 || parts[0] != Prefix {
			continue
		}
		s.mu.Lock()
		_, loaded := s.users[parts[1]]
		s.mu.Unlock()
		if !loaded {
			continue
		}
		bk := boxKey{parts[1], parts[2]}
		if parts[3] == "mailbox.json" {
			infos[bk] = true
			continue
		}
		if isChunkPath(parts[3]) {
			chunks[bk] = append(chunks[bk], p)
			if msgs[bk] == nil {
				msgs[bk] = map[string]bool{}
			}
			continue
		}
		if key, _ := splitMsgPath(parts[3]); key != "" {
			if msgs[bk] == nil {
				msgs[bk] = map[string]bool{}
			}
			msgs[bk][key] = true
		}
	}
	named := map[*User]bool{} // users whose mailboxes' names may now clash
	defer func() {
		for u := range named {
			if err == nil {
				err = s.renameSameNames(u)
			}
		}
	}()
	for bk := range infos {
		s.mu.Lock()
		u := s.users[bk.user]
		s.mu.Unlock()
		named[u] = true
		data, err := sn.Read(boxInfoPath(bk.user, bk.id))
		u.mu.Lock()
		mb := u.boxes[bk.id]
		switch {
		case errors.Is(err, store.ErrNotExist):
			if mb != nil {
				delete(u.boxes, bk.id)
				s.closeSpace(mb, true)
			}
		case err != nil:
			u.mu.Unlock()
			return err
		case mb == nil:
			// New here: its UIDs start here, all its messages new.
			if nmb, err := newMailbox(u, bk.id, data); err == nil {
				nmb.loc = newSpace(nmb)
				nmb.info.UIDValidity = freshUIDValidity(u, nmb.treeUV)
				nmb.info.UIDNext, nmb.info.RecentFrom, nmb.recentFrom = 1, 1, 1
				nmb.info.Vanished, nmb.info.VanishedFloor = nil, 0
				if err := s.compactSpace(nmb); err != nil {
					u.mu.Unlock()
					return err
				}
				u.boxes[bk.id] = nmb
			}
		default:
			// What replicates: name, subscription, special use.
			var i MailboxInfo
			if json.Unmarshal(data, &i) == nil {
				mb.mu.Lock()
				mb.info.Name, mb.info.Subscribed, mb.info.SpecialUse = i.Name, i.Subscribed, i.SpecialUse
				mb.info.Layout = max(mb.info.Layout, i.Layout)
				mb.noteModSeqLocked(i.HighestModSeq)
				mb.mu.Unlock()
			}
		}
		u.mu.Unlock()
	}
	var strays []stray
	defer func() {
		if err == nil && len(strays) > 0 {
			err = s.resyncStrays(strays)
		}
	}()
	for bk, keys := range msgs {
		s.mu.Lock()
		u := s.users[bk.user]
		s.mu.Unlock()
		u.mu.RLock()
		mb := u.boxes[bk.id]
		u.mu.RUnlock()
		if mb == nil {
			continue
		}
		moved, err := s.resyncMessages(sn, mb, keys)
		if err != nil {
			return err
		}
		// The chunks that held the lines of messages whose record moved
		// them to another chunk: their lines there are folded in.
		for _, p := range moved {
			if !slices.Contains(chunks[bk], p) {
				chunks[bk] = append(chunks[bk], p)
			}
		}
		for _, p := range chunks[bk] {
			st, err := s.resyncChunk(sn, mb, p)
			if err != nil {
				return err
			}
			strays = append(strays, st...)
		}
	}
	return nil
}

// resyncMessages brings the messages keys of mb up to date with sn: those
// new here get UIDs above UIDNEXT (recorded in the space file before any
// session sees them), those gone are expunged here. It returns the flags
// chunks that held the lines of messages whose home UID (record) changed
// to one of another chunk.
func (s *Store) resyncMessages(sn *store.Snapshot, mb *Mailbox, keys map[string]bool) (moved []string, err error) {
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var added, gone []*Message
	var lines []string
	for _, key := range sorted {
		mb.mu.RLock()
		var was imap.UID
		if m := mb.byKey.get(key); m != nil {
			was = m.home
		}
		mb.mu.RUnlock()
		nm, old, err := s.resyncMessage(sn, mb, key)
		if err != nil {
			return nil, err
		}
		mb.mu.RLock()
		if m := mb.byKey.get(key); m != nil && was != 0 && chunkOf(m.home) != chunkOf(was) {
			moved = append(moved, chunkPath(mb.user.Name, mb.ID, chunkOf(was)))
		}
		mb.mu.RUnlock()
		if nm != nil {
			added = append(added, nm)
		}
		if old != nil {
			gone = append(gone, old)
		}
	}
	if len(gone) > 0 {
		mb.mu.Lock()
		ms := newModSeq(mb.highestModSeq)
		mb.noteModSeqLocked(ms)
		for _, m := range gone {
			mb.info.addVanished(m.UID, ms)
			lines = append(lines, fmt.Sprintf("v %d %d %d", m.UID, m.UID, ms))
			if _, ok := mb.loc.uids[m.Key]; ok {
				delete(mb.loc.uids, m.Key)
				lines = append(lines, "d "+m.Key)
			}
		}
		mb.mu.Unlock()
	}
	var pending []*Message
	for _, m := range added {
		if m.UID == 0 {
			pending = append(pending, m)
		}
	}
	sort.Slice(pending, func(a, b int) bool {
		x, y := pending[a], pending[b]
		if x.home != y.home {
			return x.home < y.home
		}
		return x.Key < y.Key
	})
	lines = append(lines, mb.assignUIDs(pending)...)
	if err := s.logSpace(mb, lines, true); err != nil {
		return nil, err
	}
	for _, m := range gone {
		mb.removeMessage(m)
	}
	sort.Slice(added, func(a, b int) bool { return added[a].UID < added[b].UID })
	for _, m := range added {
		mb.addMessage(m)
	}
	return moved, nil
}

// resyncMessage compares message key of mb in sn with the index: it
// returns the message if it is new here (UID 0 if it needs one), or the
// index's if it is gone.
func (s *Store) resyncMessage(sn *store.Snapshot, mb *Mailbox, key string) (added, gone *Message, err error) {
	base, data, err := readMsg(sn.Read, mb.user.Name, mb.ID, mb.layout(), key, ".meta")
	mb.mu.RLock()
	msg := mb.byKey.get(key)
	mb.mu.RUnlock()
	if errors.Is(err, store.ErrNotExist) {
		return nil, msg, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var m msgMetaIndex
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, nil
	}
	if msg != nil {
		// Its UID here never changes. Its record changes only if two
		// nodes moved it to this mailbox apart (the merge keeps one):
		// its flags line is where the record's home UID says.
		mb.mu.Lock()
		msg.home = m.UID
		mb.mu.Unlock()
		if m.Space != mb.loc.space {
			if _, ok := mb.loc.uids[key]; !ok {
				// The record of another node that appended the same
				// message (contentKey) won the merge: this node's UID
				// for it now lives in its space file.
				mb.loc.uids[key] = msg.UID
				if err := s.logSpace(mb, []string{fmt.Sprintf("a %s %d", key, msg.UID)}, true); err != nil {
					return nil, nil, err
				}
			}
		}
		return nil, nil, nil
	}
	e, err := sn.Stat(base + ".eml")
	if err != nil && !errors.Is(err, store.ErrNotExist) {
		return nil, nil, err
	}
	nm := &Message{Key: key, home: m.UID, Date: m.Date, Size: m.Size, blob: e.Hash}
	nm.UID = mb.loc.localUID(key, m.Space, m.UID)
	mb.mu.RLock()
	if nm.UID != 0 && (nm.UID >= mb.info.UIDNext || mb.info.vanishedHas(nm.UID)) {
		nm.UID = 0 // not a UID this node gave it (damaged files): a new one
	}
	mb.mu.RUnlock()
	s.setSummary(nm, nil, data)
	nm.setMetaModSeq(m.ModSeq)
	return nm, nil, nil
}

// resyncChunk sets the flags of the messages of one flags chunk from the
// head.
// It returns the lines with flags of messages that mb does not hold (see
// resyncStrays).
func (s *Store) resyncChunk(sn *store.Snapshot, mb *Mailbox, p string) ([]stray, error) {
	data, err := sn.Read(p)
	if err != nil && !errors.Is(err, store.ErrNotExist) {
		return nil, err
	}
	var n uint32
	if _, err := fmt.Sscanf(path.Base(p), "%d", &n); err != nil {
		return nil, nil
	}
	want := map[string]chunkLine{}
	var strays []stray
	for _, l := range parseChunk(data) {
		want[l.key] = l
		mb.mu.RLock()
		m := mb.byKey.get(l.key)
		// Not held here (expunged or moved elsewhere), or held with its
		// line in another chunk (another node's record of the same
		// message won the merge): a stray whose flags are folded into
		// the message's.
		far := m == nil || chunkOf(m.home) != n
		mb.mu.RUnlock()
		if far && (len(l.flags) > 0 || len(l.unset) > 0) {
			strays = append(strays, stray{mb, l})
		}
	}
	msgs := mb.byChunk(map[uint32]bool{n: true})[n]
	for _, msg := range msgs {
		l := want[msg.Key]
		flags, modseq := mb.FlagsModSeq(msg)
		if string(formatFlags(l.flags)) != string(formatFlags(flags)) || l.modseq > modseq {
			mb.setFlags(msg, l.flags, l.modseq, nil)
		}
	}
	return strays, nil
}

// A stray is a flags line of mailbox mb for a message that mb does not
// hold: a merge of a flag change with an expunge or a MOVE leaves one
// (mergeChunk keeps the flags that the side that changed them added).
type stray struct {
	mb   *Mailbox
	line chunkLine
}

// resyncStrays makes the flags that another node added to a message while
// this one moved it (or the other way round) follow the message: a stray
// line whose key the user has in another mailbox (Writer.Move keeps the
// key) adds its flags there, in one commit that also drops the stray
// lines. Additions and removals (the line's unset marks) follow a move. Every node that follows
// the merge makes the same change, so their commits merge cleanly. The
// caller holds s.wmu.
func (s *Store) resyncStrays(strays []stray) error {
	type fix struct {
		st  stray
		dst *Mailbox
		msg *Message
	}
	var fixes []fix
	for _, st := range strays {
		st.mb.mu.RLock()
		msg := st.mb.byKey.get(st.line.key)
		st.mb.mu.RUnlock()
		if msg != nil {
			if chunkOf(msg.home) != chunkOf(st.line.uid) {
				fixes = append(fixes, fix{st, st.mb, msg})
			}
			continue
		}
		for _, mb := range st.mb.user.Mailboxes() {
			if mb == st.mb {
				continue
			}
			mb.mu.RLock()
			msg := mb.byKey.get(st.line.key)
			mb.mu.RUnlock()
			if msg != nil {
				fixes = append(fixes, fix{st, mb, msg})
				break
			}
		}
	}
	if len(fixes) == 0 {
		return nil
	}
	return s.updateLocked(s.ctx, "", "mail: flags set elsewhere follow moved messages", func(w *Writer) error {
		for _, f := range fixes {
			cur := w.Flags(f.dst, f.msg)
			next := normFlags(append(slices.Clone(cur), f.st.line.flags...))
			next = slices.DeleteFunc(next, func(fl imap.Flag) bool { return slices.Contains(f.st.line.unset, fl) })
			if !slices.Equal(next, cur) {
				if err := w.SetFlags(f.dst, f.msg, next, nil); err != nil {
					return err
				}
			}
			// The stray line goes (flush drops a gone message's line).
			gone := &Message{Key: f.st.line.key, home: f.st.line.uid}
			w.gone[gone] = true
			w.markChunk(f.st.mb, gone)
		}
		return nil
	})
}
