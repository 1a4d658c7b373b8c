// Package fat writes and reads the small FAT16 file systems of Nymote's SD
// card boot partitions: one root folder of files (no subfolders), with long
// file names, fixed timestamps and a fixed volume serial, so that the same
// files give the same bytes. U-Boot, Linux and mtools read it.
//
// Write lays out a file system in a region of an io.WriterAt (a partition
// of a card image); Locate finds where a file's bytes lie in such a region,
// so that a file can be overwritten in place (the random seed) without a
// FAT driver and without touching the FAT itself.
package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// File is one file of the root folder.
type File struct {
	// Name is the file's name: 1 to 255 characters, no slash.
	Name string
	// Data is its content.
	Data []byte
}

// Options describe the file system Write lays out.
type Options struct {
	// Size is the size of the region in bytes, a multiple of 512 between
	// 4 MiB and 2 GiB.
	Size int64
	// Label is the volume label (up to 11 characters of A-Z, 0-9, - and
	// _); "" means none.
	Label string
	// VolumeID is the volume serial number (fixed, for reproducibility).
	VolumeID uint32
	// HiddenSectors is the LBA of the partition's first sector on its
	// disk (the BPB's hidden sectors field).
	HiddenSectors uint32
}

const (
	sectorSize  = 512
	reserved    = 1
	numFATs     = 2
	rootEntries = 512
	dirEntry    = 32
	// FAT16 needs between 4085 and 65524 clusters.
	minClusters = 4085
	maxClusters = 65524
	// fatDate is 1980-01-01, the earliest FAT date: every timestamp.
	fatDate = 1<<5 | 1
)

// geometry is a FAT16 layout.
type geometry struct {
	totalSectors      uint32
	sectorsPerCluster uint32
	fatSectors        uint32
	rootSectors       uint32
	dataSector        uint32 // first sector of cluster 2
	clusters          uint32
}

func (g geometry) clusterBytes() int64 { return int64(g.sectorsPerCluster) * sectorSize }

// clusterOffset is the byte offset of cluster c in the region.
func (g geometry) clusterOffset(c uint32) int64 {
	return (int64(g.dataSector) + int64(c-2)*int64(g.sectorsPerCluster)) * sectorSize
}

// layout picks the smallest cluster size that keeps the cluster count
// within FAT16's range.
func layout(size int64) (geometry, error) {
	if size%sectorSize != 0 || size < 4<<20 || size > 2<<30 {
		return geometry{}, fmt.Errorf("fat: size %d bytes: want a multiple of 512 between 4 MiB and 2 GiB", size)
	}
	g := geometry{totalSectors: uint32(size / sectorSize), rootSectors: rootEntries * dirEntry / sectorSize}
	for spc := uint32(1); spc <= 64; spc *= 2 {
		g.sectorsPerCluster = spc
		avail := g.totalSectors - reserved - g.rootSectors
		// An upper bound of the clusters gives a FAT that is large
		// enough; the clusters are then counted after it.
		g.fatSectors = ((avail/spc+2)*2 + sectorSize - 1) / sectorSize
		g.dataSector = reserved + numFATs*g.fatSectors + g.rootSectors
		g.clusters = (g.totalSectors - g.dataSector) / spc
		if g.clusters <= maxClusters {
			break
		}
	}
	if g.clusters < minClusters || g.clusters > maxClusters {
		return geometry{}, fmt.Errorf("fat: size %d bytes gives %d clusters, outside FAT16's range", size, g.clusters)
	}
	return g, nil
}

// Write lays out a FAT16 file system holding files in the region of w that
// starts at off and is opts.Size bytes long. It writes the boot sector, the
// FATs, the root folder and the files' clusters; free clusters are left as
// they are.
func Write(w io.WriterAt, off int64, opts Options, files []File) error {
	g, err := layout(opts.Size)
	if err != nil {
		return err
	}
	label, err := labelBytes(opts.Label)
	if err != nil {
		return err
	}
	entries := 0
	if opts.Label != "" {
		entries++
	}
	names := map[string]bool{}
	shorts := map[string]bool{}
	type placed struct {
		dir   [][dirEntry]byte
		first uint32
		n     uint32 // clusters
		data  []byte
	}
	var ps []placed
	next := uint32(2)
	for _, f := range files {
		if err := checkName(f.Name); err != nil {
			return err
		}
		if names[strings.ToUpper(f.Name)] {
			return fmt.Errorf("fat: two files called %q", f.Name)
		}
		names[strings.ToUpper(f.Name)] = true
		if int64(len(f.Data)) > int64(^uint32(0)) {
			return fmt.Errorf("fat: %s: %d bytes is too large for FAT", f.Name, len(f.Data))
		}
		n := uint32((int64(len(f.Data)) + g.clusterBytes() - 1) / g.clusterBytes())
		first := uint32(0)
		if n > 0 {
			first = next
		}
		if next+n-2 > g.clusters {
			return fmt.Errorf("fat: the files do not fit in %d bytes (at %s)", opts.Size, f.Name)
		}
		next += n
		dir := dirEntries(f.Name, shorts, first, uint32(len(f.Data)))
		entries += len(dir)
		ps = append(ps, placed{dir: dir, first: first, n: n, data: f.Data})
	}
	if entries > rootEntries {
		return fmt.Errorf("fat: %d root folder entries, at most %d", entries, rootEntries)
	}

	// Boot sector with the BIOS parameter block.
	bs := make([]byte, sectorSize)
	copy(bs[0:], []byte{0xEB, 0x3C, 0x90})
	copy(bs[3:11], "NYMOTE  ")
	le := binary.LittleEndian
	le.PutUint16(bs[11:], sectorSize)
	bs[13] = byte(g.sectorsPerCluster)
	le.PutUint16(bs[14:], reserved)
	bs[16] = numFATs
	le.PutUint16(bs[17:], rootEntries)
	if g.totalSectors < 1<<16 {
		le.PutUint16(bs[19:], uint16(g.totalSectors))
	} else {
		le.PutUint32(bs[32:], g.totalSectors)
	}
	bs[21] = 0xF8 // fixed disk
	le.PutUint16(bs[22:], uint16(g.fatSectors))
	le.PutUint16(bs[24:], 63)  // sectors per track
	le.PutUint16(bs[26:], 255) // heads
	le.PutUint32(bs[28:], opts.HiddenSectors)
	bs[36] = 0x80 // drive number
	bs[38] = 0x29 // extended boot signature
	le.PutUint32(bs[39:], opts.VolumeID)
	copy(bs[43:54], label[:])
	copy(bs[54:62], "FAT16   ")
	// Boot code: int 18h ("no bootable disk"), never run by U-Boot.
	copy(bs[62:], []byte{0xCD, 0x18})
	bs[510], bs[511] = 0x55, 0xAA
	if _, err := w.WriteAt(bs, off); err != nil {
		return fmt.Errorf("fat: %w", err)
	}

	fat := make([]byte, int(g.fatSectors)*sectorSize)
	le.PutUint16(fat[0:], 0xFFF8)
	le.PutUint16(fat[2:], 0xFFFF)
	for _, p := range ps {
		for i := uint32(0); i < p.n; i++ {
			c := p.first + i
			v := uint16(c + 1)
			if i == p.n-1 {
				v = 0xFFFF
			}
			le.PutUint16(fat[2*c:], v)
		}
	}
	for i := int64(0); i < numFATs; i++ {
		if _, err := w.WriteAt(fat, off+(reserved+i*int64(g.fatSectors))*sectorSize); err != nil {
			return fmt.Errorf("fat: %w", err)
		}
	}

	root := make([]byte, int(g.rootSectors)*sectorSize)
	at := 0
	if opts.Label != "" {
		e := root[0:dirEntry]
		copy(e[0:11], label[:])
		e[11] = 0x08 // volume label
		le.PutUint16(e[24:], fatDate)
		at += dirEntry
	}
	for _, p := range ps {
		for _, e := range p.dir {
			copy(root[at:], e[:])
			at += dirEntry
		}
	}
	if _, err := w.WriteAt(root, off+int64(reserved+numFATs*g.fatSectors)*sectorSize); err != nil {
		return fmt.Errorf("fat: %w", err)
	}
	for _, p := range ps {
		if p.n == 0 {
			continue
		}
		buf := make([]byte, int64(p.n)*g.clusterBytes())
		copy(buf, p.data)
		if _, err := w.WriteAt(buf, off+g.clusterOffset(p.first)); err != nil {
			return fmt.Errorf("fat: %w", err)
		}
	}
	return nil
}

func labelBytes(l string) ([11]byte, error) {
	var b [11]byte
	copy(b[:], "NO NAME    ")
	if l == "" {
		return b, nil
	}
	if len(l) > 11 || strings.Trim(l, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
		return b, fmt.Errorf("fat: volume label %q: want up to 11 of A-Z, 0-9, - and _", l)
	}
	copy(b[:], l+strings.Repeat(" ", 11-len(l)))
	return b, nil
}

func checkName(n string) error {
	if n == "" || len(n) > 255 || n == "." || n == ".." || strings.ContainsAny(n, "/\\:*?\"<>|\x00") {
		return fmt.Errorf("fat: file name %q: want 1 to 255 characters, none of /\\:*?\"<>|", n)
	}
	for _, r := range n {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("fat: file name %q: only printable ASCII is supported", n)
		}
	}
	return nil
}

// shortChars are the characters a short (8.3) name may hold besides A-Z
// and 0-9.
const shortChars = "$%'-_@~`!(){}^#&"

func validShort(part string, max int) bool {
	if len(part) > max {
		return false
	}
	for _, r := range part {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(shortChars, r)) {
			return false
		}
	}
	return true
}

// splitName splits a name into its base and extension (after the last
// dot).
func splitName(n string) (base, ext string) {
	if i := strings.LastIndexByte(n, '.'); i > 0 {
		return n[:i], n[i+1:]
	}
	return n, ""
}

// shortName returns the 8.3 form of a name that is a valid short name in
// one case per part, with the NT case flags (0x08: base in lower case,
// 0x10: extension in lower case), or ok false.
func shortName(n string) (sn [11]byte, flags byte, ok bool) {
	base, ext := splitName(n)
	if base == "" {
		return sn, 0, false
	}
	B, E := strings.ToUpper(base), strings.ToUpper(ext)
	if !validShort(B, 8) || !validShort(E, 3) {
		return sn, 0, false
	}
	switch base {
	case B:
	case strings.ToLower(base):
		flags |= 0x08
	default:
		return sn, 0, false
	}
	switch ext {
	case E:
	case strings.ToLower(ext):
		flags |= 0x10
	default:
		return sn, 0, false
	}
	copy(sn[:], fmt.Sprintf("%-8s%-3s", B, E))
	return sn, flags, true
}

// dirEntries returns the folder entries of a file: long-name entries (when
// the name is not a plain 8.3 name) then the short entry. shorts holds the
// short names taken so far.
func dirEntries(name string, shorts map[string]bool, first, size uint32) [][dirEntry]byte {
	sn, flags, plain := shortName(name)
	if !plain {
		sn = uniqueShort(name, shorts)
	}
	shorts[string(sn[:])] = true
	var short [dirEntry]byte
	copy(short[0:11], sn[:])
	short[11] = 0x20 // archive
	short[12] = flags
	le := binary.LittleEndian
	le.PutUint16(short[16:], fatDate) // created
	le.PutUint16(short[18:], fatDate) // accessed
	le.PutUint16(short[24:], fatDate) // written
	le.PutUint16(short[26:], uint16(first))
	le.PutUint32(short[28:], size)
	if plain {
		return [][dirEntry]byte{short}
	}
	var sum byte
	for _, c := range sn {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	u := utf16.Encode([]rune(name))
	n := (len(u) + 12) / 13
	if len(u)%13 != 0 {
		u = append(u, 0)
		for len(u)%13 != 0 {
			u = append(u, 0xFFFF)
		}
	}
	var out [][dirEntry]byte
	for i := n; i >= 1; i-- {
		var e [dirEntry]byte
		e[0] = byte(i)
		if i == n {
			e[0] |= 0x40
		}
		e[11] = 0x0F
		e[13] = sum
		chunk := u[(i-1)*13 : i*13]
		for j, c := range chunk {
			var o int
			switch {
			case j < 5:
				o = 1 + 2*j
			case j < 11:
				o = 14 + 2*(j-5)
			default:
				o = 28 + 2*(j-11)
			}
			le.PutUint16(e[o:], c)
		}
		out = append(out, e)
	}
	return append(out, short)
}

// uniqueShort makes the 8.3 alias of a long name: upper case, other
// characters as _, the base cut to make room for ~N.
func uniqueShort(name string, taken map[string]bool) [11]byte {
	clean := func(s string) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			switch {
			case r == ' ' || r == '.':
			case r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(shortChars, r):
				b.WriteRune(r)
			default:
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	base, ext := splitName(name)
	b, e := clean(base), clean(ext)
	if len(e) > 3 {
		e = e[:3]
	}
	var sn [11]byte
	for i := 1; ; i++ {
		tail := fmt.Sprintf("~%d", i)
		bb := b
		if len(bb) > 8-len(tail) {
			bb = bb[:8-len(tail)]
		}
		copy(sn[:], fmt.Sprintf("%-8s%-3s", bb+tail, e))
		if !taken[string(sn[:])] {
			return sn
		}
	}
}

// ErrNotFound is wrapped by Locate's error when the file is not there.
var ErrNotFound = errors.New("no such file")

// Locate finds the file called name (a plain 8.3 name, matched without
// regard to case) in the root folder of the FAT16 file system at offset
// off of r, and returns the offset (from the start of r) and size of its
// bytes. Its clusters must follow each other (as Write lays them out), so
// that the bytes are one run that can be overwritten in place.
func Locate(r io.ReaderAt, off int64, name string) (at, size int64, err error) {
	want, _, ok := shortName(name)
	if !ok {
		want, _, ok = shortName(strings.ToUpper(name))
	}
	if !ok {
		return 0, 0, fmt.Errorf("fat: %q is not an 8.3 name", name)
	}
	bs := make([]byte, sectorSize)
	if _, err := r.ReadAt(bs, off); err != nil {
		return 0, 0, fmt.Errorf("fat: reading the boot sector: %w", err)
	}
	le := binary.LittleEndian
	bps := int64(le.Uint16(bs[11:]))
	spc := int64(bs[13])
	res := int64(le.Uint16(bs[14:]))
	nfats := int64(bs[16])
	nroot := int64(le.Uint16(bs[17:]))
	fatsz := int64(le.Uint16(bs[22:]))
	if bs[510] != 0x55 || bs[511] != 0xAA || bps < 512 || bps&(bps-1) != 0 || spc == 0 || nfats == 0 || nroot == 0 || fatsz == 0 || string(bs[54:59]) != "FAT16" {
		return 0, 0, errors.New("fat: not a FAT16 file system")
	}
	rootAt := off + (res+nfats*fatsz)*bps
	dataAt := rootAt + (nroot*dirEntry+bps-1)/bps*bps
	root := make([]byte, nroot*dirEntry)
	if _, err := r.ReadAt(root, rootAt); err != nil {
		return 0, 0, fmt.Errorf("fat: reading the root folder: %w", err)
	}
	for i := 0; i < len(root); i += dirEntry {
		e := root[i : i+dirEntry]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xE5 || e[11]&0x0F == 0x0F || e[11]&0x18 != 0 || string(e[0:11]) != string(want[:]) {
			continue
		}
		first := int64(le.Uint16(e[26:]))
		size = int64(le.Uint32(e[28:]))
		if size == 0 {
			return 0, 0, fmt.Errorf("fat: %s is empty", name)
		}
		cb := spc * bps
		n := (size + cb - 1) / cb
		fat := make([]byte, 2*(first+n))
		if _, err := r.ReadAt(fat, off+res*bps); err != nil {
			return 0, 0, fmt.Errorf("fat: reading the FAT: %w", err)
		}
		for c := first; c < first+n; c++ {
			next := int64(le.Uint16(fat[2*c:]))
			if c == first+n-1 && next >= 0xFFF8 || next == c+1 {
				continue
			}
			return 0, 0, fmt.Errorf("fat: %s is not in consecutive clusters", name)
		}
		return dataAt + (first-2)*cb, size, nil
	}
	return 0, 0, fmt.Errorf("fat: %s: %w", name, ErrNotFound)
}
