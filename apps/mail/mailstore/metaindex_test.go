package mailstore

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// metaSeeds are .meta files as writers make them and variants that the
// fast path must leave to encoding/json.
func metaSeeds(t testing.TB) []string {
	sum := Parse([]byte("From: a@example.net\r\nSubject: \"quoted\" \\ and \u00e9\r\n\r\nbody"))
	var out []string
	for _, m := range []msgMeta{
		{UID: 7, Space: "0123456789ab", Date: time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC), Size: 1900, Summary: sum, ModSeq: 42},
		{UID: 1, Date: time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), Size: 0},
		{UID: 4294967295, Space: "s", Size: 1 << 40, Summary: sum},
	} {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b), " \n"+strings.ReplaceAll(string(b), ",", " ,\n\t")+"\r\n")
	}
	return append(out,
		`{}`, ``, `[]`, `null`, `{"uid":1}x`, `{"uid":1,}`, `{"uid":01}`, `{"uid":-1}`, `{"uid":1e3}`,
		`{"uid":4294967296}`, `{"UID":5}`, `{"uid":1,"other":2}`, `{"space":"a\"b"}`, `{"space":"\u00e9"}`,
		`{"space":null}`, `{"cache":null}`, `{"cache":null,"uid":3}`, `{"cache":{"a":"}"},"uid":3}`,
		`{"cache":[1,{"b":["]"]}],"size":9}`, `{"cache":"x\\\"y","modseq":5}`, `{"date":"2024-13-01T00:00:00Z"}`,
		`{"date":"2024-01-01T00:00:00+01:00"}`, `{"uid":1,"uid":2}`, `{"size":12345678901234567890}`,
		`{"cache":{"a":1}`, `{"cache":}`, `{"uid":1 "size":2}`)
}

// TestDecodeMetaIndex checks the index's reading of a .meta against
// encoding/json's: the same fields, and an error where json gives one
// (but for the summary, which decodeMetaIndex does not check).
func TestDecodeMetaIndex(t *testing.T) {
	for _, s := range metaSeeds(t) {
		checkMetaIndex(t, []byte(s))
	}
	// The fast path takes what writers write.
	for _, s := range metaSeeds(t)[:6] {
		if _, ok := scanMetaIndex([]byte(s)); !ok {
			t.Errorf("scanMetaIndex(%.80q): not read, want read", s)
		}
	}
}

func checkMetaIndex(t *testing.T, data []byte) {
	t.Helper()
	var want msgMetaIndex
	werr := json.Unmarshal(data, &want)
	got, err := decodeMetaIndex(data)
	if werr != nil {
		if err == nil && json.Valid(data) {
			t.Errorf("decodeMetaIndex(%q) = %+v, want an error (json: %v)", data, got, werr)
		}
		return
	}
	if err != nil {
		t.Errorf("decodeMetaIndex(%q): %v, want %+v", data, err, want)
		return
	}
	if got.UID != want.UID || got.Space != want.Space || !got.Date.Equal(want.Date) || got.Date.Location().String() != want.Date.Location().String() ||
		got.Size != want.Size || got.ModSeq != want.ModSeq {
		t.Errorf("decodeMetaIndex(%q) = %+v, want %+v", data, got, want)
	}
}

// FuzzDecodeMetaIndex: decodeMetaIndex reads what json.Unmarshal reads.
//
// make test runs it for 20000 inputs past its seeds (fuzz-short: 20000x).
func FuzzDecodeMetaIndex(f *testing.F) {
	for _, s := range metaSeeds(f) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkMetaIndex(t, data)
	})
}
