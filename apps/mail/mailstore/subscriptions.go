package mailstore

import (
	"sort"
	"strings"
)

// Subscriptions outlive their mailboxes (RFC 3501 6.3.6, RFC 9051 6.3.7:
// the server must not unsubscribe a name because its mailbox is deleted;
// Dovecot keeps them too). A mailbox's own subscription is in its
// mailbox.json (MailboxInfo.Subscribed), so that RENAME carries it; the
// names subscribed without a mailbox are one item per user,
//
//	mail/USER/subscriptions     one name a line, sorted
//
// DELETE of a subscribed mailbox moves its name there, SUBSCRIBE of a name
// that is no mailbox adds it, and CREATE of a name there takes it back as
// the new mailbox's own subscription. Replicas merge it as a set (Merge).

func subsPath(user string) string { return userDir(user) + "/subscriptions" }

func parseSubs(data []byte) map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" {
			m[l] = true
		}
	}
	return m
}

func formatSubs(m map[string]bool) []byte {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil
	}
	return []byte(strings.Join(names, "\n") + "\n")
}

// SubscribedOnly returns the names the user is subscribed to that are not
// mailboxes, sorted.
func (u *User) SubscribedOnly() []string {
	u.mu.RLock()
	defer u.mu.RUnlock()
	var out []string
	for n := range u.subs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// subsOf is what this commit holds of u's subscriptions without a mailbox.
func (w *Writer) subsOf(u *User) map[string]bool {
	if m, ok := w.subs[u]; ok {
		return m
	}
	m := map[string]bool{}
	u.mu.RLock()
	for n := range u.subs {
		m[n] = true
	}
	u.mu.RUnlock()
	if w.subs == nil {
		w.subs = map[*User]map[string]bool{}
	}
	w.subs[u] = m
	w.apply = append(w.apply, func() {
		u.mu.Lock()
		u.subs = m
		u.mu.Unlock()
	})
	return m
}

// setSubscribedOnly adds or removes a name subscribed without a mailbox.
func (w *Writer) setSubscribedOnly(u *User, name string, on bool) error {
	m := w.subsOf(u)
	if m[name] == on {
		return nil
	}
	if on {
		m[name] = true
	} else {
		delete(m, name)
	}
	data := formatSubs(m)
	if data == nil {
		return w.tx.Delete(subsPath(u.Name))
	}
	return w.tx.Put(subsPath(u.Name), data)
}

// SubscribeName subscribes to or unsubscribes from a name that is not a
// mailbox (a mailbox's own subscription is SetInfo's).
func (w *Writer) SubscribeName(u *User, name string, on bool) error {
	name = NormName(name)
	if err := ValidName(name); err != nil {
		return err
	}
	return w.setSubscribedOnly(u, name, on)
}

// mergeSubs merges the set of names: a name stays unless a side removed
// it, a name either side added is there.
func mergeSubs(base, ours, theirs []byte) []byte {
	b, o, t := parseSubs(base), parseSubs(ours), parseSubs(theirs)
	out := map[string]bool{}
	for n := range o {
		if t[n] || !b[n] {
			out[n] = true
		}
	}
	for n := range t {
		if o[n] || !b[n] {
			out[n] = true
		}
	}
	return formatSubs(out)
}
