package mailstore

import "hash/maphash"

// keyIndex finds a mailbox's messages by key: an open-addressing table of
// pointers (linear probing, 8 bytes a slot, at most 3/4 full, 3/8 after
// it grows),
// about 14 bytes a message where a map[string]*Message takes about 35; a
// mailbox of 50,000 messages holds a million bytes less. The zero value
// is an empty index.
type keyIndex struct {
	slots []*Message
	n     int
}

var keySeed = maphash.MakeSeed()

func (x *keyIndex) home(key string) int {
	return int(maphash.String(keySeed, key) & uint64(len(x.slots)-1))
}

// get returns the message with key, nil if none.
func (x *keyIndex) get(key string) *Message {
	if x.n == 0 {
		return nil
	}
	mask := len(x.slots) - 1
	for i := x.home(key); ; i = (i + 1) & mask {
		m := x.slots[i]
		if m == nil || m.Key == key {
			return m
		}
	}
}

// put adds m, replacing the message with its key if there is one.
func (x *keyIndex) put(m *Message) {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.grow()
	}
	mask := len(x.slots) - 1
	for i := x.home(m.Key); ; i = (i + 1) & mask {
		switch o := x.slots[i]; {
		case o == nil:
			x.slots[i] = m
			x.n++
			return
		case o.Key == m.Key:
			x.slots[i] = m
			return
		}
	}
}

// del removes the message with key, if any.
func (x *keyIndex) del(key string) {
	if x.n == 0 {
		return
	}
	mask := len(x.slots) - 1
	i := x.home(key)
	for ; x.slots[i] == nil || x.slots[i].Key != key; i = (i + 1) & mask {
		if x.slots[i] == nil {
			return
		}
	}
	// Shift back the messages after it whose probe passes through i, so
	// that a lookup never stops at the hole.
	for j := (i + 1) & mask; x.slots[j] != nil; j = (j + 1) & mask {
		h := x.home(x.slots[j].Key)
		// j's entry may move to i if its home is not in (i, j].
		if (i < j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			x.slots[i] = x.slots[j]
			i = j
		}
	}
	x.slots[i] = nil
	x.n--
	if len(x.slots) > 16 && x.n*16 < len(x.slots)*3 {
		x.resize(len(x.slots) / 2)
	}
}

func (x *keyIndex) grow() { x.resize(max(16, 2*len(x.slots))) }

func (x *keyIndex) resize(size int) {
	old := x.slots
	x.slots, x.n = make([]*Message, size), 0
	for _, m := range old {
		if m != nil {
			x.put(m)
		}
	}
}
