package mailstore

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Flags live in chunk items of up to chunkSize UIDs each,
//
//	mail/USER/BOX/flags/HI/N     N = UID / chunkSize, HI = N / 256
//
// one line "UID KEY FLAG..." per message that has flags (a message without
// flags has no line). So STORE on a whole mailbox writes a few dozen items
// rather than one per message, and APPEND of a message without flags writes
// no flags at all. A chunk stays under chunkSize lines, so the cost of a
// write does not grow with the mailbox.
const chunkSize = 256

func chunkOf(uid imap.UID) uint32 { return uint32(uid) / chunkSize }

func chunkPath(user, id string, n uint32) string {
	return fmt.Sprintf("%s/flags/%d/%d", boxDir(user, id), n/256, n)
}

// isChunkPath reports whether sub (a path below a mailbox folder) is a
// flags chunk.
func isChunkPath(sub string) bool { return strings.HasPrefix(sub, "flags/") }

type chunkLine struct {
	uid   imap.UID
	key   string
	flags []imap.Flag
}

func parseChunk(data []byte) []chunkLine {
	var out []chunkLine
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		uid, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			continue
		}
		var flags []imap.Flag
		for _, x := range f[2:] {
			flags = append(flags, imap.Flag(x))
		}
		out = append(out, chunkLine{imap.UID(uid), f[1], normFlags(flags)})
	}
	return out
}

func formatChunk(lines []chunkLine) []byte {
	sort.Slice(lines, func(i, j int) bool {
		if lines[i].uid != lines[j].uid {
			return lines[i].uid < lines[j].uid
		}
		return lines[i].key < lines[j].key
	})
	var b bytes.Buffer
	for _, l := range lines {
		if len(l.flags) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%d %s %s\n", l.uid, l.key, formatFlags(l.flags))
	}
	return b.Bytes()
}

// mergeChunk merges a flags chunk per message and per flag (see Merge).
// A message missing from a side has no flags there.
func mergeChunk(base, ours, theirs []byte) []byte {
	type entry struct {
		uid  imap.UID
		b, o map[imap.Flag]bool
		t    map[imap.Flag]bool
	}
	m := map[string]*entry{}
	get := func(l chunkLine) *entry {
		e := m[l.key]
		if e == nil {
			e = &entry{uid: l.uid, b: map[imap.Flag]bool{}, o: map[imap.Flag]bool{}, t: map[imap.Flag]bool{}}
			m[l.key] = e
		}
		return e
	}
	for _, l := range parseChunk(base) {
		e := get(l)
		for _, f := range l.flags {
			e.b[f] = true
		}
	}
	for _, l := range parseChunk(ours) {
		e := get(l)
		e.uid = l.uid
		for _, f := range l.flags {
			e.o[f] = true
		}
	}
	for _, l := range parseChunk(theirs) {
		e := get(l)
		for _, f := range l.flags {
			e.t[f] = true
		}
	}
	var lines []chunkLine
	for key, e := range m {
		var flags []imap.Flag
		for f := range union(e.o, e.t) {
			if !e.b[f] || (e.o[f] && e.t[f]) {
				flags = append(flags, f)
			}
		}
		lines = append(lines, chunkLine{e.uid, key, normFlags(flags)})
	}
	return formatChunk(lines)
}

// markChunk notes that a chunk of mb must be written when the commit's
// function returns.
func (w *Writer) markChunk(mb *Mailbox, n uint32) {
	if w.dirty == nil {
		w.dirty = map[*Mailbox]map[uint32]bool{}
	}
	if w.dirty[mb] == nil {
		w.dirty[mb] = map[uint32]bool{}
	}
	w.dirty[mb][n] = true
}

// Flags returns msg's flags as this commit sees them: as an earlier
// SetFlags of the commit (or of its batch) left them, else as the index has
// them. A change of some flags (STORE +FLAGS, \Seen by FETCH) must read the
// flags here, inside Update, where no other write comes between the read
// and the write; flags read before Update may be stale by the time it
// commits, and writing them back would undo a concurrent change.
func (w *Writer) Flags(mb *Mailbox, msg *Message) []imap.Flag {
	if f, ok := w.flags[msg]; ok {
		return slices.Clone(f)
	}
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	return slices.Clone(msg.flags)
}

func (w *Writer) pendingFlags(msg *Message) ([]imap.Flag, bool) {
	f, ok := w.flags[msg]
	return f, ok
}

// flush writes the flags chunks that the commit changed, from the index
// overlaid with this commit's appends, expunges and flag changes.
func (w *Writer) flush() error {
	for mb, chunks := range w.dirty {
		for n := range chunks {
			lo, hi := imap.UID(n*chunkSize), imap.UID((n+1)*chunkSize)
			var lines []chunkLine
			add := func(m *Message, cur []imap.Flag) {
				if w.gone[m] {
					return
				}
				if f, ok := w.pendingFlags(m); ok {
					cur = f
				}
				if len(cur) > 0 {
					lines = append(lines, chunkLine{m.UID, m.Key, cur})
				}
			}
			mb.mu.RLock()
			k := sort.Search(len(mb.msgs), func(i int) bool { return mb.msgs[i].UID >= lo })
			for ; k < len(mb.msgs) && mb.msgs[k].UID < hi; k++ {
				add(mb.msgs[k], mb.msgs[k].flags)
			}
			mb.mu.RUnlock()
			for _, m := range w.added[mb] {
				if m.UID >= lo && m.UID < hi {
					add(m, m.flags)
				}
			}
			p := chunkPath(mb.user.Name, mb.ID, n)
			if len(lines) == 0 {
				if err := w.tx.Delete(p); err != nil {
					return err
				}
				continue
			}
			if err := w.tx.Put(p, formatChunk(lines)); err != nil {
				return err
			}
		}
	}
	return nil
}
