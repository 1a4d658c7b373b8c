package kernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// Vmlinux returns the uncompressed vmlinux ELF inside an x86 bzImage (as
// Firecracker boots it). It reads the setup header's payload_offset and
// payload_length and decompresses the payload (zstd or gzip).
func Vmlinux(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, errors.New("kernel: vmlinux: not a bzImage (no HdrS setup header)")
	}
	setupSects := int(bz[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects + 1) * 512
	off := int(binary.LittleEndian.Uint32(bz[0x248:]))
	n := int(binary.LittleEndian.Uint32(bz[0x24c:]))
	if start+off+n > len(bz) || n < 8 {
		return nil, fmt.Errorf("kernel: vmlinux: payload %d+%d out of the image's %d bytes", start+off, n, len(bz))
	}
	payload := bz[start+off : start+off+n]
	var out []byte
	var err error
	switch {
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// The kernel appends the uncompressed size (4 bytes) after the
		// zstd frame.
		var d *zstd.Decoder
		d, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(1<<30))
		if err == nil {
			out, err = d.DecodeAll(payload[:len(payload)-4], nil)
			d.Close()
		}
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		var zr *gzip.Reader
		zr, err = gzip.NewReader(bytes.NewReader(payload))
		if err == nil {
			zr.Multistream(false)
			out, err = io.ReadAll(zr)
		}
	case bytes.HasPrefix(payload, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		var xr *xz.Reader
		xr, err = xz.NewReader(bytes.NewReader(payload))
		if err == nil {
			xr.SingleStream = true
			out, err = io.ReadAll(xr)
		}
	case bytes.HasPrefix(payload, []byte{0x02, 0x21, 0x4c, 0x18}):
		// The legacy LZ4 frame, followed by the uncompressed size
		// (4 bytes), which the reader would take for a block.
		out, err = io.ReadAll(lz4.NewReader(bytes.NewReader(payload[:len(payload)-4])))
	default:
		return nil, fmt.Errorf("kernel: vmlinux: payload compressed with an unsupported format (magic % x)", payload[:4])
	}
	if err != nil {
		return nil, fmt.Errorf("kernel: vmlinux: decompressing: %w", err)
	}
	if !bytes.HasPrefix(out, []byte("\x7fELF")) {
		return nil, errors.New("kernel: vmlinux: payload is not an ELF file")
	}
	return out, nil
}

// Config returns the kernel configuration built into an uncompressed
// kernel (a vmlinux or an arm64 Image) with CONFIG_IKCONFIG, as a map from
// option (CONFIG_EXT4_FS) to value (y, m, a string). Options that are "not
// set" are absent.
func Config(uncompressed []byte) (map[string]string, error) {
	const start = "IKCFG_ST"
	i := bytes.Index(uncompressed, []byte(start))
	if i < 0 {
		return nil, errors.New("kernel: config: no IKCFG_ST marker (kernel built without CONFIG_IKCONFIG)")
	}
	zr, err := gzip.NewReader(bytes.NewReader(uncompressed[i+len(start):]))
	if err != nil {
		return nil, fmt.Errorf("kernel: config: %w", err)
	}
	zr.Multistream(false)
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("kernel: config: %w", err)
	}
	cfg := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			cfg[k] = strings.Trim(v, `"`)
		}
	}
	return cfg, nil
}

// PVHEntry returns the 32-bit PVH entry point of a vmlinux ELF: its
// XEN_ELFNOTE_PHYS32_ENTRY note, which Xen (type = "pvh") and QEMU
// (-kernel with an ELF) boot through. A kernel without CONFIG_PVH has none.
func PVHEntry(vmlinux []byte) (uint32, error) {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return 0, fmt.Errorf("kernel: PVH entry: not an ELF file: %w", err)
	}
	defer f.Close()
	const xenElfnotePhys32Entry = 18
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			return 0, fmt.Errorf("kernel: PVH entry: %w", err)
		}
		for len(b) >= 12 {
			namesz := f.ByteOrder.Uint32(b[0:])
			descsz := f.ByteOrder.Uint32(b[4:])
			typ := f.ByteOrder.Uint32(b[8:])
			nameEnd := 12 + int(namesz+3)&^3
			descEnd := nameEnd + int(descsz+3)&^3
			if descEnd > len(b) || nameEnd > len(b) {
				break
			}
			name := string(bytes.TrimRight(b[12:12+namesz], "\x00"))
			if name == "Xen" && typ == xenElfnotePhys32Entry && descsz >= 4 {
				return f.ByteOrder.Uint32(b[nameEnd:]), nil
			}
			b = b[descEnd:]
		}
	}
	return 0, errors.New("kernel: no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): the kernel lacks CONFIG_PVH")
}
