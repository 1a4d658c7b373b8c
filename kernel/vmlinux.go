package kernel

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
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
