package imapd

import (
	"bytes"
	"cmp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

// SORT and THREAD (RFC 5256), answered by the layer over the selected
// mailbox: the search program is evaluated by Session.Search, and the
// matches are sorted or threaded from the parse cache (envelope, header,
// size, internal date), never from the messages themselves.

// selected returns the session if a mailbox is selected; if not, it
// answers the command BAD.
func (p *proto) selected(cmd *command) (*Session, error) {
	sess, err := p.authed(cmd)
	if sess == nil {
		return nil, err
	}
	if sess.view == nil {
		return nil, p.bad(cmd.tag, "[CLIENTBUG] No mailbox selected")
	}
	return sess, nil
}

// charset reads the charset argument: UTF-8 and US-ASCII are known.
func (p *proto) charset(cmd *command) (ok bool, err error) {
	cs, good := "", cmd.sp()
	if good {
		cs, good = cmd.astring()
	}
	if !good || !cmd.sp() {
		return false, p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want a charset and search keys")
	}
	switch strings.ToUpper(cs) {
	case "UTF-8", "US-ASCII":
		return true, nil
	}
	return false, p.respond(cmd.tag, "NO [BADCHARSET (UTF-8 US-ASCII)] Unknown charset")
}

// matches evaluates a search program, returning the matching items in
// mailbox order.
func (p *proto) matches(sess *Session, cmd *command, uid bool) ([]mailstore.Item, bool, error) {
	crit, err := cmd.searchProgram()
	if err != nil {
		return nil, false, p.bad(cmd.tag, "[CLIENTBUG] Syntax error: "+err.Error())
	}
	data, err := sess.Search(imapserver.NumKindUID, crit, nil)
	if err != nil {
		return nil, false, p.respond(cmd.tag, "NO "+err.Error())
	}
	set, _ := data.All.(imap.UIDSet)
	uids, _ := set.Nums()
	match := make(map[imap.UID]bool, len(uids))
	for _, u := range uids {
		match[u] = true
	}
	var items []mailstore.Item
	for _, it := range sess.view.Items(nil) {
		if (it.Seq != 0 || uid) && match[it.Msg.UID] {
			items = append(items, it)
		}
	}
	return items, true, nil
}

type sortKey struct {
	key     string
	reverse bool
}

// sortCmd answers SORT and UID SORT (RFC 5256 3).
func sortCmd(p *proto, cmd *command) error {
	sess, err := p.selected(cmd)
	if sess == nil {
		return err
	}
	uid := strings.HasPrefix(cmd.name, "UID ")
	var keys []sortKey
	if !cmd.sp() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want sort criteria")
	}
	// ESORT (RFC 5267 3.2): RETURN (MIN MAX COUNT ALL SAVE) before the
	// criteria.
	var want map[string]bool
	esort := false
	if save := cmd.pos; strings.EqualFold(cmd.atom(), "RETURN") {
		esort = true
		var bad string
		if want, bad = cmd.returnOptions(); bad != "" {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: "+bad)
		}
		if !cmd.sp() {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want sort criteria")
		}
	} else {
		cmd.pos = save
	}
	if cmd.pos >= len(cmd.args) || cmd.args[cmd.pos] != '(' {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want sort criteria")
	}
	cmd.pos++
	rev := false
	for {
		k := strings.ToUpper(cmd.atom())
		switch k {
		case "REVERSE":
			if rev {
				return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: REVERSE REVERSE")
			}
			rev = true
		case "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO":
			keys = append(keys, sortKey{k, rev})
			rev = false
		default:
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: unknown sort key "+strconv.Quote(k))
		}
		if cmd.pos < len(cmd.args) && cmd.args[cmd.pos] == ')' && !rev {
			cmd.pos++
			break
		}
		if !cmd.sp() {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error in sort criteria")
		}
	}
	if ok, err := p.charset(cmd); !ok {
		return err
	}
	items, ok, err := p.matches(sess, cmd, uid)
	if !ok {
		return err
	}
	sortItems(items, keys)
	var b bytes.Buffer
	if esort {
		if ret := returned(sess, want, items); len(ret) > 0 {
			writeESort(&b, cmd.tag, items, ret, uid)
		}
		b.WriteString(cmd.tag + " OK " + cmd.name + " completed\r\n")
		return p.writeOut(b.Bytes())
	}
	b.WriteString("* SORT")
	for _, it := range items {
		b.WriteByte(' ')
		if uid {
			b.WriteString(strconv.FormatUint(uint64(it.Msg.UID), 10))
		} else {
			b.WriteString(strconv.FormatUint(uint64(it.Seq), 10))
		}
	}
	b.WriteString("\r\n" + cmd.tag + " OK " + cmd.name + " completed\r\n")
	return p.writeOut(b.Bytes())
}

// writeESort writes ESORT's ESEARCH response (RFC 5267 3.2): MIN and MAX
// are the first and last in sort order, ALL the numbers in sort order.
func writeESort(b *bytes.Buffer, tag string, items []mailstore.Item, ret []string, uid bool) {
	num := func(it mailstore.Item) uint32 {
		if uid {
			return uint32(it.Msg.UID)
		}
		return it.Seq
	}
	b.WriteString("* ESEARCH (TAG " + quote(tag) + ")")
	if uid {
		b.WriteString(" UID")
	}
	for _, o := range ret {
		switch {
		case o == "COUNT":
			b.WriteString(" COUNT " + strconv.Itoa(len(items)))
		case len(items) == 0:
		case o == "MIN":
			b.WriteString(" MIN " + strconv.FormatUint(uint64(num(items[0])), 10))
		case o == "MAX":
			b.WriteString(" MAX " + strconv.FormatUint(uint64(num(items[len(items)-1])), 10))
		case o == "ALL":
			b.WriteString(" ALL ")
			for i := 0; i < len(items); {
				j := i
				for j+1 < len(items) && num(items[j+1]) == num(items[j])+1 {
					j++
				}
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.FormatUint(uint64(num(items[i])), 10))
				if j > i {
					b.WriteString(":" + strconv.FormatUint(uint64(num(items[j])), 10))
				}
				i = j + 1
			}
		}
	}
	b.WriteString("\r\n")
}

// sortItems sorts items (in mailbox order) by keys; ties keep mailbox
// order (RFC 5256 3). Each message's keys are computed once.
func sortItems(items []mailstore.Item, keys []sortKey) {
	type row struct {
		it    mailstore.Item
		strs  []string
		times []time.Time
	}
	rows := make([]row, len(items))
	for i, it := range items {
		r := row{it: it, strs: make([]string, len(keys)), times: make([]time.Time, len(keys))}
		m, env := it.Msg, envelope(it.Msg)
		for k, key := range keys {
			switch key.key {
			case "ARRIVAL":
				r.times[k] = m.Date
			case "DATE":
				r.times[k] = sentDate(m)
			case "SUBJECT":
				s, _ := baseSubject(env.Subject)
				r.strs[k] = asciiUpper(s)
			case "FROM":
				r.strs[k] = asciiUpper(firstMailbox(env.From))
			case "TO":
				r.strs[k] = asciiUpper(firstMailbox(env.To))
			case "CC":
				r.strs[k] = asciiUpper(firstMailbox(env.Cc))
			}
		}
		rows[i] = r
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := &rows[i], &rows[j]
		for k, key := range keys {
			var c int
			switch key.key {
			case "ARRIVAL", "DATE":
				c = a.times[k].Compare(b.times[k])
			case "SIZE":
				c = cmp.Compare(a.it.Msg.Size, b.it.Msg.Size)
			default:
				c = strings.Compare(a.strs[k], b.strs[k])
			}
			if key.reverse {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return false
	})
	for i := range rows {
		items[i] = rows[i].it
	}
}

var emptyEnvelope imap.Envelope

func envelope(m *mailstore.Message) *imap.Envelope {
	c := m.Summary()
	if c == nil || c.Envelope == nil {
		return &emptyEnvelope
	}
	return c.Envelope
}

// sentDate is the Date header in UTC, or the internal date if there is
// none (RFC 5256 3, DATE).
func sentDate(m *mailstore.Message) time.Time {
	if d := envelope(m).Date; !d.IsZero() {
		return d.UTC()
	}
	return m.Date.UTC()
}

// firstMailbox is the addr-mailbox (local part) of a list's first address
// (a group's start and end markers are not addresses: they have no host).
func firstMailbox(l []imap.Address) string {
	for _, a := range l {
		if a.Host != "" {
			return a.Mailbox
		}
	}
	return ""
}

// asciiUpper maps a-z to A-Z: keys compared as octets after it are in
// the i;ascii-casemap collation (RFC 4790 9.2).
func asciiUpper(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'a' <= b[j] && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// baseSubject extracts the base subject (RFC 5256 2.1) and says whether
// the subject was a reply or forward (what it stripped said so).
func baseSubject(s string) (base string, reply bool) {
	// (1) Whitespace runs are one space.
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }), " ")
	for {
		// (2) Trailers: "(fwd)" and whitespace.
		for {
			t := strings.TrimRight(s, " ")
			if len(t) >= 5 && strings.EqualFold(t[len(t)-5:], "(fwd)") {
				t = t[:len(t)-5]
				reply = true
			}
			if t == s {
				break
			}
			s = t
		}
		// (3), (4), (5): leaders and blobs, until neither is left.
		for {
			t := strings.TrimLeft(s, " ")
			if r, ok := stripRefwd(t); ok {
				t, reply = r, true
			} else if r, ok := stripBlob(t); ok && strings.TrimLeft(r, " ") != "" {
				t = r
			}
			if t == s {
				break
			}
			s = t
		}
		// (6) "[fwd: ...]".
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s = s[5 : len(s)-1]
			reply = true
			continue
		}
		return s, reply
	}
}

// stripBlob removes a leading "[...]" (no brackets inside) and the spaces
// after it.
func stripBlob(s string) (string, bool) {
	if !strings.HasPrefix(s, "[") {
		return s, false
	}
	i := strings.IndexAny(s[1:], "[]")
	if i < 0 || s[1+i] != ']' {
		return s, false
	}
	return strings.TrimLeft(s[i+2:], " "), true
}

// stripRefwd removes a leading subj-refwd: *blob ("re" / "fw" / "fwd")
// *WSP [blob] ":".
func stripRefwd(s string) (string, bool) {
	t := s
	for {
		r, ok := stripBlob(t)
		if !ok {
			break
		}
		t = r
	}
	u := strings.ToLower(t)
	switch {
	case strings.HasPrefix(u, "re"):
		t = t[2:]
	case strings.HasPrefix(u, "fwd"):
		t = t[3:]
	case strings.HasPrefix(u, "fw"):
		t = t[2:]
	default:
		return s, false
	}
	t = strings.TrimLeft(t, " ")
	if r, ok := stripBlob(t); ok {
		t = r
	}
	if !strings.HasPrefix(t, ":") {
		return s, false
	}
	return t[1:], true
}

// threadCmd answers THREAD and UID THREAD (RFC 5256 4).
func threadCmd(p *proto, cmd *command) error {
	sess, err := p.selected(cmd)
	if sess == nil {
		return err
	}
	uid := strings.HasPrefix(cmd.name, "UID ")
	if !cmd.sp() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want a threading algorithm")
	}
	alg := strings.ToUpper(cmd.atom())
	if alg != "ORDEREDSUBJECT" && alg != "REFERENCES" {
		return p.bad(cmd.tag, "[CLIENTBUG] Unknown threading algorithm "+strconv.Quote(alg))
	}
	if ok, err := p.charset(cmd); !ok {
		return err
	}
	items, ok, err := p.matches(sess, cmd, uid)
	if !ok {
		return err
	}
	var roots []*threadNode
	if alg == "ORDEREDSUBJECT" {
		roots = orderedSubject(items)
	} else {
		roots = references(items)
	}
	var b bytes.Buffer
	b.WriteString("* THREAD ")
	for _, r := range roots {
		b.WriteByte('(')
		writeThread(&b, r, uid)
		b.WriteByte(')')
	}
	b.WriteString("\r\n" + cmd.tag + " OK " + cmd.name + " completed\r\n")
	return p.writeOut(b.Bytes())
}

// threadNode is a message in a thread, or a dummy (it nil) standing for a
// message referred to but not there.
type threadNode struct {
	it       *mailstore.Item
	id       string
	parent   *threadNode
	children []*threadNode
	order    int // mailbox order, for ties
}

// writeThread writes a node and what is below it (RFC 5256 5, thread-list
// contents): a single child follows its parent, several are nested lists.
func writeThread(b *bytes.Buffer, n *threadNode, uid bool) {
	if n.it != nil {
		if uid {
			b.WriteString(strconv.FormatUint(uint64(n.it.Msg.UID), 10))
		} else {
			b.WriteString(strconv.FormatUint(uint64(n.it.Seq), 10))
		}
	}
	switch len(n.children) {
	case 0:
	case 1:
		if n.it != nil {
			b.WriteByte(' ')
		}
		writeThread(b, n.children[0], uid)
	default:
		if n.it != nil {
			b.WriteByte(' ')
		}
		for _, c := range n.children {
			b.WriteByte('(')
			writeThread(b, c, uid)
			b.WriteByte(')')
		}
	}
}

// nodeDate is a node's sent date: a dummy's is its first child's.
func nodeDate(n *threadNode) (time.Time, int) {
	for n.it == nil {
		if len(n.children) == 0 {
			return time.Time{}, 0
		}
		n = n.children[0]
	}
	return sentDate(n.it.Msg), n.order
}

func sortByDate(ns []*threadNode) {
	sort.SliceStable(ns, func(i, j int) bool {
		a, ao := nodeDate(ns[i])
		b, bo := nodeDate(ns[j])
		if c := a.Compare(b); c != 0 {
			return c < 0
		}
		return ao < bo
	})
}

// orderedSubject threads by base subject (RFC 5256 4, ORDEREDSUBJECT):
// each thread's first message (by sent date) is the parent of the others;
// threads are in the order of their first messages.
func orderedSubject(items []mailstore.Item) []*threadNode {
	nodes := make([]*threadNode, len(items))
	subjects := make(map[*threadNode]string, len(items))
	dates := make(map[*threadNode]time.Time, len(items))
	for i := range items {
		n := &threadNode{it: &items[i], order: i}
		nodes[i] = n
		s, _ := baseSubject(envelope(n.it.Msg).Subject)
		subjects[n], dates[n] = asciiUpper(s), sentDate(n.it.Msg)
	}
	sort.SliceStable(nodes, func(i, j int) bool {
		if c := strings.Compare(subjects[nodes[i]], subjects[nodes[j]]); c != 0 {
			return c < 0
		}
		if c := dates[nodes[i]].Compare(dates[nodes[j]]); c != 0 {
			return c < 0
		}
		return nodes[i].order < nodes[j].order
	})
	var roots []*threadNode
	var last string
	for i, n := range nodes {
		s := subjects[n]
		if i > 0 && s == last {
			r := roots[len(roots)-1]
			r.children = append(r.children, n)
			continue
		}
		last = s
		roots = append(roots, n)
	}
	sortByDate(roots)
	return roots
}

// msgIDs splits a header's message-ids ("<a@b> <c@d>").
func msgIDs(v string) []string {
	var ids []string
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			return ids
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return ids
		}
		if id := strings.TrimSpace(v[i+1 : i+j]); id != "" {
			ids = append(ids, strings.ToLower(id))
		}
		v = v[i+j+1:]
	}
}

func headerIDs(m *mailstore.Message, key string) []string {
	vals, ok := m.HeaderField(key)
	if ok {
		var ids []string
		for _, v := range vals {
			ids = append(ids, msgIDs(v)...)
		}
		return ids
	}
	env := envelope(m)
	switch key {
	case "message-id":
		return msgIDs(env.MessageID)
	case "in-reply-to":
		var ids []string
		for _, v := range env.InReplyTo {
			ids = append(ids, msgIDs("<"+strings.Trim(v, "<>")+">")...)
		}
		return ids
	}
	return nil
}

// references threads by the References and In-Reply-To headers, then by
// base subject (RFC 5256 4, REFERENCES).
func references(items []mailstore.Item) []*threadNode {
	table := map[string]*threadNode{}
	get := func(id string) *threadNode {
		n := table[id]
		if n == nil {
			n = &threadNode{id: id}
			table[id] = n
		}
		return n
	}
	// below reports whether a is b or below b.
	below := func(a, b *threadNode) bool {
		for n := a; n != nil; n = n.parent {
			if n == b {
				return true
			}
		}
		return false
	}
	link := func(parent, child *threadNode) {
		if child.parent != nil {
			p := child.parent
			for i, c := range p.children {
				if c == child {
					p.children = append(p.children[:i], p.children[i+1:]...)
					break
				}
			}
		}
		child.parent = parent
		if parent != nil {
			parent.children = append(parent.children, child)
		}
	}
	for i := range items {
		m := items[i].Msg
		var n *threadNode
		ids := headerIDs(m, "message-id")
		if len(ids) > 0 && table[ids[0]] != nil && table[ids[0]].it == nil {
			n = table[ids[0]]
		} else {
			// No Message-ID, or a duplicate: a unique one.
			id := "\x00" + strconv.Itoa(i)
			if len(ids) > 0 && table[ids[0]] == nil {
				id = ids[0]
			}
			n = get(id)
		}
		n.it, n.order = &items[i], i
		refs := headerIDs(m, "references")
		if len(refs) == 0 {
			if irt := headerIDs(m, "in-reply-to"); len(irt) > 0 {
				refs = irt[:1]
			}
		}
		// (1B) Link the references in order, keeping links there
		// are and making no loop.
		for j := 0; j+1 < len(refs); j++ {
			a, b := get(refs[j]), get(refs[j+1])
			if b.parent == nil && !below(a, b) {
				link(a, b)
			}
		}
		// (1C) The last reference is the message's parent.
		var parent *threadNode
		if len(refs) > 0 {
			parent = get(refs[len(refs)-1])
		}
		if parent != nil && below(parent, n) {
			continue
		}
		if n.parent != parent {
			link(parent, n)
		}
	}
	// (2) The root set.
	var roots []*threadNode
	for _, n := range table {
		if n.parent == nil {
			roots = append(roots, n)
		}
	}
	// A stable start: the root set in the order of first appearance.
	sort.Slice(roots, func(i, j int) bool { return firstOrder(roots[i]) < firstOrder(roots[j]) })
	// (3) Prune dummies.
	roots = prune(roots, true)
	// (4) Sort the root set by date.
	sortByDate(roots)
	// (5) Group the root set by base subject.
	subj := map[string]*threadNode{}
	subjectOf := func(n *threadNode) (string, bool) {
		for n.it == nil && len(n.children) > 0 {
			n = n.children[0]
		}
		if n.it == nil {
			return "", false
		}
		s, r := baseSubject(envelope(n.it.Msg).Subject)
		return asciiUpper(s), r
	}
	for _, r := range roots {
		s, reply := subjectOf(r)
		if s == "" {
			continue
		}
		old := subj[s]
		if old == nil {
			subj[s] = r
			continue
		}
		_, oldReply := subjectOf(old)
		if (r.it == nil && old.it != nil) || (old.it != nil && oldReply && !reply) {
			subj[s] = r
		}
	}
	var merged []*threadNode
	replace := func(old, n *threadNode) {
		for i, m := range merged {
			if m == old {
				merged[i] = n
				return
			}
		}
		merged = append(merged, n)
	}
	for _, r := range roots {
		if r.parent != nil { // merged into a root before it
			continue
		}
		s, reply := subjectOf(r)
		t := subj[s]
		if s == "" || t == nil || t == r {
			merged = append(merged, r)
			continue
		}
		_, tReply := subjectOf(t)
		switch {
		case t.it == nil && r.it == nil:
			for _, c := range r.children {
				c.parent = t
			}
			t.children = append(t.children, r.children...)
		case t.it == nil:
			r.parent = t
			t.children = append(t.children, r)
		case r.it == nil:
			// The dummy r takes t's place.
			t.parent = r
			r.children = append(r.children, t)
			subj[s] = r
			replace(t, r)
		case !tReply && reply:
			r.parent = t
			t.children = append(t.children, r)
		default:
			d := &threadNode{children: []*threadNode{t, r}, order: t.order}
			t.parent, r.parent = d, d
			subj[s] = d
			replace(t, d)
		}
	}
	// (6) Sort every level by date.
	var sortAll func(ns []*threadNode)
	sortAll = func(ns []*threadNode) {
		for _, n := range ns {
			sortAll(n.children)
		}
		sortByDate(ns)
	}
	sortAll(merged)
	return merged
}

func firstOrder(n *threadNode) int {
	if n.it != nil {
		return n.order
	}
	best := int(^uint(0) >> 1)
	for _, c := range n.children {
		if o := firstOrder(c); o < best {
			best = o
		}
	}
	return best
}

// prune removes dummies (RFC 5256 4, REFERENCES step 3): one without
// children goes; one with children gives them its place, unless it is a
// root with more than one child.
func prune(ns []*threadNode, root bool) []*threadNode {
	var out []*threadNode
	for _, n := range ns {
		n.children = prune(n.children, false)
		if n.it != nil {
			out = append(out, n)
			continue
		}
		switch {
		case len(n.children) == 0:
		case root && len(n.children) > 1:
			out = append(out, n)
		default:
			for _, c := range n.children {
				c.parent = n.parent
			}
			out = append(out, n.children...)
		}
	}
	return out
}
