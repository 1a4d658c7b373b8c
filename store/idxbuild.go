package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"math"
	"slices"

	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// idxBuilder collects a pack's entries as they are written, in the
// pack's order (name, offset, CRC-32), and makes the pack's index from
// them: what go-git's idxfile.Writer does, without its lock and map per
// entry, its sort through an interface and its small appends per entry
// (an eighth of a pack merge's time).
type idxBuilder struct {
	ents []idxfile.Entry
}

func (b *idxBuilder) add(h Hash, off int64, crc uint32) {
	b.ents = append(b.ents, idxfile.Entry{Hash: h, CRC32: crc, Offset: uint64(off)})
}

// index returns the index of the pack whose checksum is sum: the entries
// in the order of their names, each name once (the first added counts, as
// with idxfile.Writer), offsets of 2 GiB and above in the 64-bit table.
func (b *idxBuilder) index(sum Hash) *idxfile.MemoryIndex {
	ents := b.ents
	// By name, then offset: entries are added in the order they are
	// written, so a name written twice keeps its first entry.
	slices.SortFunc(ents, func(x, y idxfile.Entry) int {
		if c := cmp.Compare(binary.BigEndian.Uint64(x.Hash[:8]), binary.BigEndian.Uint64(y.Hash[:8])); c != 0 {
			return c
		}
		if c := bytes.Compare(x.Hash[8:], y.Hash[8:]); c != 0 {
			return c
		}
		return cmp.Compare(x.Offset, y.Offset)
	})
	ents = slices.CompactFunc(ents, func(x, y idxfile.Entry) bool { return x.Hash == y.Hash })
	idx := &idxfile.MemoryIndex{Version: idxfile.VersionSupported, PackfileChecksum: sum}
	// The three tables, each one array cut into the buckets of the
	// fanout (a bucket's slice cannot grow into the next one's).
	names := make([]byte, 0, 20*len(ents))
	off32 := make([]byte, 0, 4*len(ents))
	crcs := make([]byte, 0, 4*len(ents))
	n64 := uint64(0)
	i := 0
	for fan := range 256 {
		idx.FanoutMapping[fan] = -1
		j := i
		for j < len(ents) && int(ents[j].Hash[0]) == fan {
			j++
		}
		if j > i {
			idx.FanoutMapping[fan] = len(idx.Names)
			n0, o0, c0 := len(names), len(off32), len(crcs)
			for _, e := range ents[i:j] {
				names = append(names, e.Hash[:]...)
				o := e.Offset
				if o > math.MaxInt32 {
					idx.Offset64 = binary.BigEndian.AppendUint64(idx.Offset64, o)
					o = n64 | 1<<31
					n64++
				}
				off32 = binary.BigEndian.AppendUint32(off32, uint32(o))
				crcs = binary.BigEndian.AppendUint32(crcs, e.CRC32)
			}
			idx.Names = append(idx.Names, names[n0:len(names):len(names)])
			idx.Offset32 = append(idx.Offset32, off32[o0:len(off32):len(off32)])
			idx.CRC32 = append(idx.CRC32, crcs[c0:len(crcs):len(crcs)])
		}
		i = j
		idx.Fanout[fan] = uint32(i)
	}
	return idx
}
