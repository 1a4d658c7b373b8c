package charset

import (
	"errors"
	"io"
	"mime"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	for _, c := range []struct{ label, in, want string }{
		{"ISO-8859-1", "caf\xe9", "café"},
		{"latin1", "\x80", "€"}, // read as Windows-1252, as mail clients do
		{"windows-1252", "\x93quoted\x94", "\u201cquoted\u201d"},
		{" Windows-1251 ", "\xce\xf8\xe8\xe1\xea\xe0", "Ошибка"},
		{"KOI8-R", "\xf0\xd2\xc9\xd7\xc5\xd4", "Привет"},
		{"iso-8859-2", "\xa3\xf3d\xbc", "Łódź"},
		{"ISO-8859-15", "\xa4", "€"},
		{"iso-8859-7", "\xe1\xe2\xe3", "αβγ"},
		{"utf-8", "déjà", "déjà"},
		{"UTF-16", "\xfe\xff\x00h\x00i", "hi"},
		{"utf-16le", "h\x00i\x00", "hi"},
		{"macintosh", "\x8e", "é"},
	} {
		r, err := Reader(c.label, strings.NewReader(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.label, err)
			continue
		}
		got, err := io.ReadAll(r)
		if err != nil || string(got) != c.want {
			t.Errorf("%s: %q, %v; want %q", c.label, got, err, c.want)
		}
		if !Known(c.label) {
			t.Errorf("Known(%q) = false", c.label)
		}
	}
	for _, label := range []string{"shift_jis", "x-unknown", ""} {
		r, err := Reader(label, strings.NewReader("raw"))
		if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), label) {
			t.Errorf("%q: error %v, want ErrUnknown naming it", label, err)
		}
		if b, _ := io.ReadAll(r); string(b) != "raw" {
			t.Errorf("%q: reader gives %q, want the raw bytes", label, b)
		}
		if Known(label) {
			t.Errorf("Known(%q) = true", label)
		}
	}
}

// TestWordDecoder: encoded words in header fields (RFC 2047) through
// mime.WordDecoder with Reader.
func TestWordDecoder(t *testing.T) {
	d := mime.WordDecoder{CharsetReader: Reader}
	got, err := d.DecodeHeader("=?windows-1251?B?zvjo4erg?= =?KOI8-R?Q?=F0=D2=C9=D7=C5=D4?= ok")
	if err != nil || got != "ОшибкаПривет ok" {
		t.Errorf("%q, %v", got, err)
	}
}
