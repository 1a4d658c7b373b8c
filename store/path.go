package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxPathLen is the longest path the store accepts, in bytes.
const MaxPathLen = 4096

// ValidatePath reports whether p is a path the store accepts: slash-separated
// segments, none empty, "." or "..", none named ".git" (in any case, which
// git refuses), no NUL byte, no leading or trailing slash, valid UTF-8, and at
// most MaxPathLen bytes with segments of at most 255 bytes. The error names
// what is wrong and wraps ErrInvalidPath.
func ValidatePath(p string) error {
	if why := pathProblem(p); why != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidPath, p, why)
	}
	return nil
}

// pathProblem says what is wrong with p for ValidatePath ("" if nothing).
func pathProblem(p string) string {
	switch {
	case p == "":
		return "empty"
	case len(p) > MaxPathLen:
		return fmt.Sprintf("longer than %d bytes", MaxPathLen)
	case strings.HasPrefix(p, "/"):
		return "absolute (starts with /)"
	case strings.HasSuffix(p, "/"):
		return "ends with /"
	case strings.IndexByte(p, 0) >= 0:
		return "contains a NUL byte"
	case !utf8.ValidString(p):
		return "not valid UTF-8"
	}
	for i, seg := range strings.Split(p, "/") {
		switch {
		case seg == "":
			return fmt.Sprintf("segment %d is empty", i+1)
		case seg == "." || seg == "..":
			return fmt.Sprintf("segment %d is %q", i+1, seg)
		case strings.EqualFold(seg, ".git"):
			return fmt.Sprintf("segment %d is %q, which git refuses", i+1, seg)
		case len(seg) > 255:
			return fmt.Sprintf("segment %d is longer than 255 bytes", i+1)
		}
	}
	return ""
}

// validatePrefix accepts "" (the whole store) or a valid path.
func validatePrefix(p string) error {
	if p == "" {
		return nil
	}
	return ValidatePath(p)
}

// Shard spreads key over two levels of 256 folders chosen by the SHA-256 of
// the key: Shard("k") is "xx/yy/k". Keys under one prefix written through
// Shard keep every tree object small (at most 256 entries on the two upper
// levels, and a handful of items per leaf up to millions of items), so the
// cost of a commit does not grow with the number of items. The key must be a
// valid path segment.
func Shard(key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:2])
	return h[:2] + "/" + h[2:4] + "/" + key
}

// Unshard returns the key of a path made with Shard (its last segment).
func Unshard(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// joinPath joins a prefix and a relative path.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
