package update

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
)

// FuzzVerifyBundle: on any bytes (mutations of a good bundle), the
// streaming VerifyBundle and the in-memory ReadBundle agree: both accept
// the same manifest or both refuse, with errors of the same kind; neither
// panics.
//
// make test runs it for 4000 inputs past its seeds.
// (fuzz-short: 4000x)
func FuzzVerifyBundle(f *testing.F) {
	_, s := newKey(f, "k")
	trusted := []ed25519.PublicKey{s.Public()}
	var b bytes.Buffer
	if err := WriteBundle(&b, fakeImage(f, "v2", s)); err != nil {
		f.Fatal(err)
	}
	good := b.Bytes()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(append(bytes.Clone(good), good...))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, errA := ReadBundle(bytes.NewReader(in), trusted, 1<<20)
		v, errV := VerifyBundle(bytes.NewReader(in), trusted, 1<<20, nil)
		if (errA == nil) != (errV == nil) {
			t.Fatalf("ReadBundle: %v; VerifyBundle: %v", errA, errV)
		}
		if errA != nil {
			for _, kind := range []error{ErrTampered, ErrUnsigned, ErrUntrusted} {
				if errors.Is(errA, kind) != errors.Is(errV, kind) {
					t.Fatalf("ReadBundle: %v; VerifyBundle: %v: not the same kind", errA, errV)
				}
			}
			return
		}
		if !bytes.Equal(a.Manifest, v.Manifest) || len(a.Files) != len(v.Files) {
			t.Fatalf("ReadBundle and VerifyBundle accepted different images")
		}
	})
}
