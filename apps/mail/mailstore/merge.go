package mailstore

import (
	"bytes"
	"encoding/json"
	"fmt"
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
//   - mailbox.json keeps the higher HIGHESTMODSEQ (and UIDNEXT and \Recent
//     mark of stores from before UIDs were each node's), and each side's
//     own changes of name, subscription and special use (the greater value
//     when both changed one, the same on every node).
//
// Different messages have different keys, so they never meet here; the
// same message appended on two nodes has one key (contentKey), and its two
// records meet (.meta: the higher home UID). UIDs are each node's own
// (local.go), so a merge changes none.
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
		// Two nodes' records of one message (contentKey, or a MOVE to
		// one mailbox on both): the higher home UID, the same choice on
		// every node.
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
	// A mailbox rewritten into Layout16 (Relayout) on one side stays so.
	m.Layout = max(o.Layout, t.Layout)
	if t.UIDValidity != o.UIDValidity {
		// Replicas never change UIDVALIDITY; if they differ the mailbox was
		// made twice, and the higher one is safe for clients of both.
		if t.UIDValidity > m.UIDValidity {
			m.UIDValidity = t.UIDValidity
		}
	}
	return json.Marshal(m)
}
