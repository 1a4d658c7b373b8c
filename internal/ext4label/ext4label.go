// Package ext4label reads the volume label of an ext2/3/4 file system, as
// the runtime finds its data disk and the code-disk stub its code disk by
// label. Standard library only: the stub links nothing else.
package ext4label

import (
	"bytes"
	"encoding/binary"
	"os"
)

// Read returns the label of the file system on dev (a block device or an
// image file), or "" when it has none, is not ext2/3/4 or cannot be read.
func Read(dev string) string {
	f, err := os.Open(dev)
	if err != nil {
		return ""
	}
	defer f.Close()
	sb := make([]byte, 0x88)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		return ""
	}
	return FromSuperblock(sb)
}

// FromSuperblock returns the label of an ext2/3/4 superblock (read at
// offset 1024): s_magic 0xEF53 at 0x38, s_volume_name at 0x78, 16 bytes.
func FromSuperblock(sb []byte) string {
	if len(sb) < 0x88 || binary.LittleEndian.Uint16(sb[0x38:]) != 0xef53 {
		return ""
	}
	name := sb[0x78:0x88]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return string(name)
}
