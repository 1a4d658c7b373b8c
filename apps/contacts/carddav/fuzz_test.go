package carddav_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-vcard"

	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
)

// FuzzParse feeds arbitrary bytes to the vCard parser: it must never
// panic, every refusal is a *dav.Error with a message, and what it parses
// encodes and parses again.
//
// make test runs it for 8000 inputs past its seeds (fuzz-short: 8000x).
func FuzzParse(f *testing.F) {
	f.Add(vc("FN:Ann", "EMAIL;TYPE=work:a@x", "TEL;VALUE=uri:tel:+1-555"))
	f.Add([]byte("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:x\r\nFN:X\r\nN:a;b;;;\r\nPHOTO;ENCODING=b;TYPE=JPEG:AAAA\r\n  BBBB\r\nEND:VCARD\r\n"))
	f.Add([]byte("BEGIN:VCARD\r\nVERSION:4.0\r\nitem1.X-ABLABEL;X=\"a;b\":c\\,d\r\nEND:VCARD\r\n"))
	f.Add([]byte("BEGIN:VCARD\nBEGIN:VCARD\nEND:VCARD\nEND:VCARD\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		done := make(chan error, 1)
		go func() { done <- parseRoundTrip(data) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(parseBudget):
			t.Fatalf("parsing %q still running after %v", data, parseBudget)
		}
	})
}

// parseBudget is how long parsing one fuzzed vCard may take before the
// fuzz target reports it as a hang (it takes microseconds).
const parseBudget = 20 * time.Second

func parseRoundTrip(data []byte) error {
	card, err := carddav.Parse(data)
	if err != nil {
		if de := (*dav.Error)(nil); !errors.As(err, &de) || de.Message == "" {
			return fmt.Errorf("refusal without a status and message: %v", err)
		}
		return nil
	}
	var b bytes.Buffer
	if err := vcard.NewEncoder(&b).Encode(card); err != nil {
		return nil // the encoder refuses what it cannot write; no panic is what counts
	}
	if _, err := carddav.Parse(b.Bytes()); err != nil {
		return fmt.Errorf("parsed, encoded as %q, does not parse again: %v", b.String(), err)
	}
	return nil
}
