package images

import (
	"bytes"
	bin "encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

// ubootEnvSize is the size of U-Boot's environment in Debian's sunxi
// builds (CONFIG_ENV_SIZE, 64 KiB; not in the binary's strings: found by
// booting uboot.env files of 16 to 256 KiB under QEMU 10, only 64 KiB
// passed the CRC check): U-Boot reads that many bytes of uboot.env and
// checks their CRC.
const ubootEnvSize = 64 << 10

// ubootEnvChanges are what the card's environment changes in U-Boot's
// default one: no boot delay (a key pressed at once still stops it), no
// USB scan before booting (preboot), and booting from the card only (FEL
// is kept for developers: it costs nothing when unused), never from USB,
// SCSI, PXE or DHCP.
var ubootEnvChanges = []struct{ name, value string }{
	{"bootdelay", "0"},
	{"preboot", ""},
	{"boot_targets", "fel mmc0"},
}

// ubootEnv returns the card's uboot.env: U-Boot's built-in default
// environment (found in the U-Boot binary) with ubootEnvChanges, as U-Boot
// stores it: a CRC32, then NUL-terminated name=value pairs, padded to
// ubootEnvSize. U-Boot replaces its whole environment with the file, so the
// defaults (load addresses, fdtfile, console) must all be there.
func ubootEnv(uboot []byte) ([]byte, error) {
	vars, err := defaultEnv(uboot)
	if err != nil {
		return nil, err
	}
	var data bytes.Buffer
	for _, v := range vars {
		name, _, _ := strings.Cut(v, "=")
		for _, c := range ubootEnvChanges {
			if c.name == name {
				v = name + "=" + c.value
				if c.value == "" {
					v = ""
				}
			}
		}
		if v != "" {
			data.WriteString(v + "\x00")
		}
	}
	data.WriteByte(0)
	if data.Len() > ubootEnvSize-4 {
		return nil, fmt.Errorf("U-Boot environment of %d bytes does not fit in %d", data.Len(), ubootEnvSize-4)
	}
	env := make([]byte, ubootEnvSize)
	copy(env[4:], data.Bytes())
	bin.LittleEndian.PutUint32(env, crc32.ChecksumIEEE(env[4:]))
	return env, nil
}

// defaultEnv finds U-Boot's default environment in its binary: a block of
// NUL-terminated name=value strings ending with an empty one, holding
// bootdelay and bootcmd.
func defaultEnv(ub []byte) ([]string, error) {
	validName := func(s string) bool {
		name, _, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return false
		}
		for _, r := range name {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:#-", r)) {
				return false
			}
		}
		for _, r := range s {
			if r < 0x20 || r > 0x7e {
				return false
			}
		}
		return true
	}
	var found []string
	for off := 0; ; {
		i := bytes.Index(ub[off:], []byte("\x00bootdelay="))
		if i < 0 {
			break
		}
		at := off + i + 1
		off = at
		// Back to the block's first entry.
		start := at
		for start > 1 {
			j := bytes.LastIndexByte(ub[:start-1], 0)
			if !validName(string(ub[j+1 : start-1])) {
				break
			}
			start = j + 1
		}
		var vars []string
		ok := false
		for p := start; p < len(ub); {
			end := bytes.IndexByte(ub[p:], 0)
			if end < 0 {
				break
			}
			s := string(ub[p : p+end])
			if s == "" {
				ok = true
				break
			}
			if !validName(s) {
				break
			}
			vars = append(vars, s)
			p += end + 1
		}
		hasCmd := false
		for _, v := range vars {
			hasCmd = hasCmd || strings.HasPrefix(v, "bootcmd=")
		}
		if ok && hasCmd {
			if found != nil {
				return nil, errors.New("two default environments found in the U-Boot binary")
			}
			found = vars
		}
	}
	if found == nil {
		return nil, errors.New("no default environment (with bootdelay and bootcmd) found in the U-Boot binary: is it U-Boot?")
	}
	return found, nil
}
