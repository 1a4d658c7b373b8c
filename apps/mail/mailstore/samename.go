package mailstore

import (
	"fmt"
	"sort"
	"strings"
)

// Mailboxes made under one name on two nodes apart (CREATE of the same
// name on each side of a partition, or RENAMEs to one name) have different
// ids, so the merge keeps both: two mailboxes of that name. The node that
// follows such a merge (resync), or loads a user whose mailboxes a merge
// left so (User), renames all but one of them in a commit of its own, as
// Dovecot's dsync does: the mailbox with the lowest id keeps the name, each
// other becomes NAME-ID (the first 8 characters of its id; the whole id if
// that name is taken too). The renames are a function of the merged tree
// alone, so every node that follows the merge makes the same commit, and
// those commits merge cleanly (both sides set one name). A rename changes
// neither a mailbox's UIDs nor its UIDVALIDITY, and no message moves.

// sameNames returns the renames (by mailbox id) that leave no two of the
// mailboxes names (by id) with one name.
func sameNames(names map[string]string) map[string]string {
	ids := make([]string, 0, len(names))
	taken := map[string]bool{}
	groups := map[string][]string{}
	for id, name := range names {
		ids = append(ids, id)
		taken[name] = true
		groups[name] = append(groups[name], id)
	}
	sort.Strings(ids)
	var out map[string]string
	for _, id := range ids {
		name := names[id]
		g := groups[name]
		if len(g) < 2 || minString(g) == id {
			continue
		}
		short := id
		if len(short) > 8 {
			short = short[:8]
		}
		next := name + "-" + short
		if taken[next] {
			next = name + "-" + id
		}
		for i := 2; taken[next]; i++ {
			next = fmt.Sprintf("%s-%s-%d", name, id, i)
		}
		taken[next] = true
		if out == nil {
			out = map[string]string{}
		}
		out[id] = next
	}
	return out
}

func minString(s []string) string {
	m := s[0]
	for _, v := range s[1:] {
		if v < m {
			m = v
		}
	}
	return m
}

// renameSameNames renames u's mailboxes that share a name (see above) in
// one commit. The caller holds s.wmu.
func (s *Store) renameSameNames(u *User) error {
	names := map[string]string{}
	boxes := map[string]*Mailbox{}
	u.mu.RLock()
	for id, mb := range u.boxes {
		names[id] = mb.Name()
		boxes[id] = mb
	}
	u.mu.RUnlock()
	fixes := sameNames(names)
	if len(fixes) == 0 {
		return nil
	}
	ids := make([]string, 0, len(fixes))
	var what []string
	for id := range fixes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		what = append(what, fmt.Sprintf("%q → %q", names[id], fixes[id]))
	}
	s.log.Info("mail: mailboxes of one name made on two nodes: renaming all but one", "user", u.Name, "renames", strings.Join(what, ", "))
	return s.updateLocked(s.ctx, "", "mail: mailboxes of one name made on two nodes: "+strings.Join(what, ", "), func(w *Writer) error {
		for _, id := range ids {
			if err := w.SetInfo(boxes[id], func(i *MailboxInfo) { i.Name = fixes[id] }); err != nil {
				return err
			}
		}
		return nil
	})
}
