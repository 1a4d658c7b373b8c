// Package ubootenv reads and writes U-Boot environments in the format
// U-Boot keeps in a file or a raw area (uboot.env on an SD card's FAT boot
// partition) and that libubootenv's fw_printenv and fw_setenv read and
// write for a single, non-redundant copy: a little-endian CRC32 (IEEE) of
// the rest, then NUL-terminated name=value pairs, an empty string ending
// them, padded with NULs (U-Boot pads with NULs too) to the environment's
// fixed size. The CRC covers the whole padded area.
//
// It is the building block of SD card boards' try-once updates: U-Boot's
// boot script keeps the slot to try in a variable, and the appliance
// clears or sets variables in place (Set) once it reports good.
package ubootenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strings"
)

// ErrBadCRC: the area's CRC does not match (not an environment, or a
// damaged one: U-Boot then falls back to its built-in default).
var ErrBadCRC = errors.New("ubootenv: bad CRC")

// Env is an environment: its variables in order, and its size.
type Env struct {
	// Vars are the name=value pairs, in stored order.
	Vars []Var
	// Size is the environment area's size (CONFIG_ENV_SIZE).
	Size int
}

// Var is one variable.
type Var struct{ Name, Value string }

// Parse reads an environment area (its whole size).
func Parse(b []byte) (*Env, error) {
	if len(b) < 5 {
		return nil, fmt.Errorf("ubootenv: %d bytes is too small for an environment", len(b))
	}
	if binary.LittleEndian.Uint32(b) != crc32.ChecksumIEEE(b[4:]) {
		return nil, ErrBadCRC
	}
	e := &Env{Size: len(b)}
	data := b[4:]
	for len(data) > 0 && data[0] != 0 {
		end := strings.IndexByte(string(data), 0)
		if end < 0 {
			return nil, errors.New("ubootenv: the variables are not NUL-terminated")
		}
		name, value, ok := strings.Cut(string(data[:end]), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("ubootenv: %q is not name=value", data[:end])
		}
		e.Vars = append(e.Vars, Var{name, value})
		data = data[end+1:]
	}
	return e, nil
}

// Get returns the value of name and whether it is set.
func (e *Env) Get(name string) (string, bool) {
	for _, v := range e.Vars {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}

// Set sets name to value, in place if it exists (else at the end); an
// empty value removes it, as U-Boot's setenv does.
func (e *Env) Set(name, value string) error {
	if name == "" || strings.ContainsAny(name, "=\x00") || strings.ContainsRune(value, 0) {
		return fmt.Errorf("ubootenv: cannot set %q=%q", name, value)
	}
	for i, v := range e.Vars {
		if v.Name == name {
			if value == "" {
				e.Vars = append(e.Vars[:i], e.Vars[i+1:]...)
			} else {
				e.Vars[i].Value = value
			}
			return nil
		}
	}
	if value != "" {
		e.Vars = append(e.Vars, Var{name, value})
	}
	return nil
}

// Bytes encodes the environment as its area of Size bytes.
func (e *Env) Bytes() ([]byte, error) {
	out := make([]byte, e.Size)
	p := 4
	for _, v := range e.Vars {
		s := v.Name + "=" + v.Value
		if p+len(s)+2 > e.Size {
			return nil, fmt.Errorf("ubootenv: the variables do not fit in %d bytes", e.Size)
		}
		p += copy(out[p:], s) + 1
	}
	binary.LittleEndian.PutUint32(out, crc32.ChecksumIEEE(out[4:]))
	return out, nil
}

// New returns an environment of size bytes holding vars (sorted by name,
// for a reproducible area).
func New(size int, vars map[string]string) *Env {
	e := &Env{Size: size}
	for n, v := range vars {
		e.Vars = append(e.Vars, Var{n, v})
	}
	sort.Slice(e.Vars, func(i, j int) bool { return e.Vars[i].Name < e.Vars[j].Name })
	return e
}
