package mailstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Merge is the store.MergeFunc for mail/ (register it with
// store.SetMergeFunc(Prefix+"/", Merge)): it reconciles one path that two
// replicas changed differently since their merge base.
//
//   - A message deleted on either side stays deleted (set union minus
//     deletions): a nil side gives nil.
//   - Flags (chunks of them) merge per message and per flag: a flag in the
//     base stays only if neither side removed it; a flag not in the base is
//     kept if either side added it.
//   - The names subscribed without a mailbox merge as a set.
//   - A message whose merged flags differ from a side's gets a fresh
//     MODSEQ (see mergeChunk and modseq.go).
//   - mailbox.json keeps the higher UIDNEXT, \Recent mark and
//     HIGHESTMODSEQ, and each
//     side's own changes of name and subscription (theirs wins when both
//     changed one).
//
// Messages that the replicas added have distinct keys, so they never meet
// here; two of them may share a UID, which the index fixes when it next
// loads or follows the merge (fixDuplicateUIDs), above UIDNEXT.
func Merge(p string, base, ours, theirs []byte) ([]byte, error) {
	if strings.Contains(p, "/flags/") {
		// A missing chunk is a chunk without lines, not a deletion.
		if out := mergeChunk(base, ours, theirs); len(out) > 0 {
			return out, nil
		}
		return nil, nil
	}
	if strings.HasSuffix(p, "/subscriptions") {
		return mergeSubs(base, ours, theirs), nil
	}
	if ours == nil || theirs == nil {
		return nil, nil
	}
	switch {
	case strings.HasSuffix(p, "/mailbox.json"):
		return mergeInfo(base, ours, theirs)
	case strings.HasSuffix(p, ".meta"):
		// Only a UID renumbering changes a message's record: two nodes
		// that renumbered it differently agree on the higher UID (the
		// same choice on both sides, so that replicas converge).
		return pickMeta(ours, theirs), nil
	case strings.HasSuffix(p, ".eml"):
		// Never changed once written; the greater content, were it ever.
		return greater(ours, theirs), nil
	}
	return nil, fmt.Errorf("mailstore: no merge for %s", p)
}

// greater returns the greater of a and b: a choice that does not depend on
// which side is ours, so that every replica makes it alike.
func greater(a, b []byte) []byte {
	if bytes.Compare(a, b) >= 0 {
		return a
	}
	return b
}

// pickMeta returns the message record with the higher UID (the greater
// content on a tie).
func pickMeta(ours, theirs []byte) []byte {
	var o, t msgMeta
	if json.Unmarshal(ours, &o) != nil || json.Unmarshal(theirs, &t) != nil || o.UID == t.UID {
		return greater(ours, theirs)
	}
	if o.UID > t.UID {
		return ours
	}
	return theirs
}

func union(a, b map[imap.Flag]bool) map[imap.Flag]bool {
	m := map[imap.Flag]bool{}
	for f := range a {
		m[f] = true
	}
	for f := range b {
		m[f] = true
	}
	return m
}

func mergeInfo(base, ours, theirs []byte) ([]byte, error) {
	var b, o, t MailboxInfo
	if base != nil {
		if err := json.Unmarshal(base, &b); err != nil {
			return nil, err
		}
	}
	if err := json.Unmarshal(ours, &o); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(theirs, &t); err != nil {
		return nil, err
	}
	m := o
	if t.UIDNext > m.UIDNext {
		m.UIDNext = t.UIDNext
	}
	if t.RecentFrom > m.RecentFrom {
		m.RecentFrom = t.RecentFrom
	}
	m.HighestModSeq = max(m.HighestModSeq, t.HighestModSeq)
	// Expunged UIDs: those of both sides (a UID is never reused).
	m.VanishedFloor = max(m.VanishedFloor, t.VanishedFloor)
	m.Vanished = append(m.Vanished, t.Vanished...)
	m.normVanished()
	// A setting changed on one side takes that side's value; changed on
	// both to different values, the greater one (the same on every
	// replica, whichever side is ours).
	if t.Name != b.Name && (o.Name == b.Name || t.Name > o.Name) {
		m.Name = t.Name
	}
	if t.Subscribed != b.Subscribed && (o.Subscribed == b.Subscribed || t.Subscribed) {
		m.Subscribed = t.Subscribed
	}
	if ts, os, bs := fmt.Sprint(t.SpecialUse), fmt.Sprint(o.SpecialUse), fmt.Sprint(b.SpecialUse); ts != bs && (os == bs || ts > os) {
		m.SpecialUse = t.SpecialUse
	}
	if t.UIDValidity != o.UIDValidity {
		// Replicas never change UIDVALIDITY; if they differ the mailbox was
		// made twice, and the higher one is safe for clients of both.
		if t.UIDValidity > m.UIDValidity {
			m.UIDValidity = t.UIDValidity
		}
	}
	return json.Marshal(m)
}

// fixDuplicateUIDs gives every message that shares a UID with another (after
// a merge of replicas) a new UID above UIDNEXT, in one commit. The caller
// holds s.wmu.
func (s *Store) fixDuplicateUIDs(mb *Mailbox) error {
	// Messages that share a UID all get new ones (in key order: the same
	// choice on every replica), so that no client sees a UID it knows
	// name another message; so does a message that arrives with a UID
	// this mailbox expunged (never reused).
	mb.mu.RLock()
	var dups []*Message
	for i := 0; i < len(mb.msgs); {
		j := i + 1
		for ; j < len(mb.msgs) && mb.msgs[j].UID == mb.msgs[i].UID; j++ {
		}
		switch {
		case j-i > 1:
			group := append([]*Message(nil), mb.msgs[i:j]...)
			sort.Slice(group, func(a, b int) bool { return group[a].Key < group[b].Key })
			dups = append(dups, group...)
		case mb.info.vanishedHas(mb.msgs[i].UID):
			dups = append(dups, mb.msgs[i])
		}
		i = j
	}
	mb.mu.RUnlock()
	if len(dups) == 0 {
		return nil
	}
	return s.updateLocked(s.ctx, "", "mail: new UIDs for messages that a merge gave one UID", func(w *Writer) error {
		i, err := w.info(mb)
		if err != nil {
			return err
		}
		for _, m := range dups {
			sum := m.Summary()
			nm := &Message{Key: m.Key, UID: i.UIDNext, Date: m.Date, Size: m.Size, blob: m.blob, flags: mb.Flags(m)}
			// A new message to clients (and its old UID expunged).
			nm.setMetaModSeq(w.modSeq(mb))
			i.HighestModSeq = nm.modseq
			i.addVanished(m.UID, nm.modseq)
			i.UIDNext++
			// The flags move to the new UID's chunk.
			w.gone[m] = true
			w.added[mb] = append(w.added[mb], nm)
			w.markChunk(mb, chunkOf(m.UID))
			w.markChunk(mb, chunkOf(nm.UID))
			meta, err := json.Marshal(msgMeta{UID: nm.UID, Date: nm.Date, Size: nm.Size, Summary: sum, ModSeq: nm.modseq})
			if err != nil {
				return err
			}
			s.setSummary(nm, sum, meta)
			if err := w.tx.Put(msgBase(mb.user.Name, mb.ID, m.Key)+".meta", meta); err != nil {
				return err
			}
			old := m
			w.apply = append(w.apply, func() {
				mb.removeMessage(old)
				mb.addMessage(nm)
			})
		}
		return w.putInfo(mb, i)
	})
}
