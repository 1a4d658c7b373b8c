// Package charset decodes the single-byte and UTF-16 character sets that
// mail still arrives in (ISO 8859, Windows code pages, KOI8, Mac Roman,
// IBM code pages for Cyrillic and Western Europe) into UTF-8, for searching
// and for decoding header fields: Reader has the signature of go-message's
// CharsetReader and of mime.WordDecoder's.
//
// The multi-byte East Asian sets (Shift_JIS, ISO-2022-JP, EUC-*, GBK,
// GB18030, Big5) are not here: their tables would add megabytes to a
// program that must fit a 64 MiB appliance, and text in them is left as it
// came (searched as raw bytes). Labels are matched as the WHATWG Encoding
// standard and IANA name them, case-insensitively; like every mail client,
// ISO-8859-1 and US-ASCII labels are read as Windows-1252, their superset
// in practice.
package charset

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// ErrUnknown is wrapped by the error of a charset this package does not
// decode.
var ErrUnknown = fmt.Errorf("charset: unknown character set")

var byLabel = map[string]encoding.Encoding{}

func add(e encoding.Encoding, labels ...string) {
	for _, l := range labels {
		byLabel[l] = e
	}
}

func init() {
	add(charmap.Windows1252, "iso-8859-1", "iso8859-1", "iso_8859-1", "iso88591", "latin1", "l1", "cp819", "ibm819",
		"iso-ir-100", "csisolatin1", "windows-1252", "cp1252", "x-cp1252", "ansi_x3.4-1968", "ascii", "us-ascii", "iso-8859-1:1987")
	add(charmap.ISO8859_2, "iso-8859-2", "iso8859-2", "iso_8859-2", "iso88592", "latin2", "l2", "csisolatin2", "iso-ir-101")
	add(charmap.ISO8859_3, "iso-8859-3", "iso8859-3", "iso_8859-3", "iso88593", "latin3", "l3", "csisolatin3", "iso-ir-109")
	add(charmap.ISO8859_4, "iso-8859-4", "iso8859-4", "iso_8859-4", "iso88594", "latin4", "l4", "csisolatin4", "iso-ir-110")
	add(charmap.ISO8859_5, "iso-8859-5", "iso8859-5", "iso_8859-5", "iso88595", "cyrillic", "csisolatincyrillic", "iso-ir-144")
	add(charmap.ISO8859_6, "iso-8859-6", "iso8859-6", "iso_8859-6", "iso88596", "arabic", "csisolatinarabic", "iso-ir-127", "ecma-114", "asmo-708")
	add(charmap.ISO8859_7, "iso-8859-7", "iso8859-7", "iso_8859-7", "iso88597", "greek", "greek8", "csisolatingreek", "iso-ir-126", "ecma-118", "elot_928")
	add(charmap.ISO8859_8, "iso-8859-8", "iso8859-8", "iso_8859-8", "iso88598", "hebrew", "csisolatinhebrew", "iso-ir-138", "visual",
		"iso-8859-8-i", "iso-8859-8-e", "logical", "csiso88598i")
	add(charmap.Windows1254, "iso-8859-9", "iso8859-9", "iso_8859-9", "iso88599", "latin5", "l5", "csisolatin5", "iso-ir-148",
		"windows-1254", "cp1254", "x-cp1254")
	add(charmap.ISO8859_10, "iso-8859-10", "iso8859-10", "iso885910", "latin6", "l6", "csisolatin6", "iso-ir-157")
	add(charmap.Windows874, "iso-8859-11", "iso8859-11", "iso885911", "tis-620", "windows-874", "dos-874", "cp874")
	add(charmap.ISO8859_13, "iso-8859-13", "iso8859-13", "iso885913")
	add(charmap.ISO8859_14, "iso-8859-14", "iso8859-14", "iso885914", "latin8")
	add(charmap.ISO8859_15, "iso-8859-15", "iso8859-15", "iso_8859-15", "iso885915", "latin9", "latin-9", "csisolatin9", "l9")
	add(charmap.ISO8859_16, "iso-8859-16", "iso8859-16", "latin10")
	add(charmap.Windows1250, "windows-1250", "cp1250", "x-cp1250")
	add(charmap.Windows1251, "windows-1251", "cp1251", "x-cp1251")
	add(charmap.Windows1253, "windows-1253", "cp1253", "x-cp1253")
	add(charmap.Windows1255, "windows-1255", "cp1255", "x-cp1255")
	add(charmap.Windows1256, "windows-1256", "cp1256", "x-cp1256")
	add(charmap.Windows1257, "windows-1257", "cp1257", "x-cp1257")
	add(charmap.Windows1258, "windows-1258", "cp1258", "x-cp1258")
	add(charmap.KOI8R, "koi8-r", "koi8r", "koi", "koi8", "cskoi8r", "koi8_r")
	add(charmap.KOI8U, "koi8-u", "koi8-ru")
	add(charmap.Macintosh, "macintosh", "mac", "csmacintosh", "x-mac-roman")
	add(charmap.MacintoshCyrillic, "x-mac-cyrillic", "x-mac-ukrainian")
	add(charmap.CodePage437, "ibm437", "cp437", "437", "cspc8codepage437")
	add(charmap.CodePage850, "ibm850", "cp850", "850", "cspc850multilingual")
	add(charmap.CodePage852, "ibm852", "cp852", "852")
	add(charmap.CodePage866, "ibm866", "cp866", "866", "csibm866")
	add(unicode.UTF16(unicode.BigEndian, unicode.UseBOM), "utf-16", "utf-16be", "ucs-2", "unicodefffe")
	add(unicode.UTF16(unicode.LittleEndian, unicode.UseBOM), "utf-16le", "unicode", "csunicode", "iso-10646-ucs-2", "unicodefeff")
}

// Reader returns r's text, in the character set called label, as UTF-8.
// UTF-8 passes through unchanged. A label it does not know gives an error
// wrapping ErrUnknown (and r itself, for a caller that wants the raw bytes).
func Reader(label string, r io.Reader) (io.Reader, error) {
	l := strings.ToLower(strings.TrimSpace(label))
	switch l {
	case "utf-8", "utf8", "unicode-1-1-utf-8":
		return r, nil
	}
	e, ok := byLabel[l]
	if !ok {
		return r, fmt.Errorf("%w: %q", ErrUnknown, label)
	}
	return transform.NewReader(r, e.NewDecoder()), nil
}

// Known reports whether Reader decodes the character set called label.
func Known(label string) bool {
	l := strings.ToLower(strings.TrimSpace(label))
	_, ok := byLabel[l]
	return ok || l == "utf-8" || l == "utf8" || l == "unicode-1-1-utf-8"
}
