package appliance

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Input event constants from linux/input-event-codes.h.
const (
	evKey    = 0x01
	keyPower = 116
)

var sizeofTimeval = unsafe.Sizeof(unix.Timeval{})

func nativeUint16(b []byte) uint16 { return binary.NativeEndian.Uint16(b) }
func nativeUint32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }
