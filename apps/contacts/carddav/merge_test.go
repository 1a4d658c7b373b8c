package carddav_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
	"github.com/nymote/nymote/store"
)

func vc(lines ...string) []byte {
	return []byte("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:u\r\n" + strings.Join(lines, "\r\n") + "\r\nEND:VCARD\r\n")
}

// mergeBoth merges ours and theirs both ways round and checks that the
// cards are the same (every replica must reach the same card).
func mergeBoth(t *testing.T, base, ours, theirs []byte) []byte {
	t.Helper()
	got, err := carddav.MergeVCard(base, ours, theirs)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := carddav.MergeVCard(base, theirs, ours)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(rev) {
		t.Errorf("not symmetric:\n%s\nvs\n%s", got, rev)
	}
	return got
}

func TestMergeVCard(t *testing.T) {
	base := vc("FN:Ann", "EMAIL:a@x", "TEL:1", "REV:20260101T000000Z")
	tests := []struct {
		name         string
		base         []byte
		ours, theirs []byte
		has, hasNot  []string
		deleted      bool
	}{
		{"different properties", base,
			vc("FN:Ann Archer", "EMAIL:a@x", "TEL:1", "REV:20260102T000000Z"),
			vc("FN:Ann", "EMAIL:a@x", "TEL:1", "NOTE:met at work", "REV:20260103T000000Z"),
			[]string{"FN:Ann Archer", "NOTE:met at work", "REV:20260103T000000Z"}, nil, false},
		{"emails as sets", base,
			vc("FN:Ann", "EMAIL:a@x", "EMAIL:b@x", "TEL:1", "REV:20260102T000000Z"),
			vc("FN:Ann", "EMAIL:c@x", "TEL:1", "TEL:2", "REV:20260102T000000Z"),
			[]string{"EMAIL:b@x", "EMAIL:c@x", "TEL:1", "TEL:2"}, []string{"EMAIL:a@x"}, false},
		{"same property, later REV wins", base,
			vc("FN:Ours", "EMAIL:a@x", "TEL:1", "REV:20260105T000000Z"),
			vc("FN:Theirs", "EMAIL:a@x", "TEL:1", "REV:20260104T000000Z"),
			[]string{"FN:Ours"}, []string{"FN:Theirs"}, false},
		{"edit beats delete", base, nil, vc("FN:Edited", "REV:20260102T000000Z"), []string{"FN:Edited"}, nil, false},
		{"both added", nil, vc("FN:A", "EMAIL:a@x"), vc("FN:A", "EMAIL:b@x"), []string{"EMAIL:a@x", "EMAIL:b@x"}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeBoth(t, tc.base, tc.ours, tc.theirs)
			for _, h := range tc.has {
				if !strings.Contains(string(got), h+"\r\n") {
					t.Errorf("merged card lacks %s:\n%s", h, got)
				}
			}
			for _, h := range tc.hasNot {
				if strings.Contains(string(got), h+"\r\n") {
					t.Errorf("merged card has %s:\n%s", h, got)
				}
			}
		})
	}
}

// TestMergeVCardConflictNote: where both sides changed one property, the
// losing side's value is kept in the card's NOTE (appended to a note the
// card has), a property the losing side removed is said missing, and a
// photo is named, not copied; the merge is the same whichever side is
// ours.
func TestMergeVCardConflictNote(t *testing.T) {
	base := vc("FN:Ann", "TITLE:Engineer", "ORG:Acme", "REV:20260101T000000Z")
	tests := []struct {
		name         string
		base         []byte
		ours, theirs []byte
		note         string
	}{
		{"one property", base,
			vc("FN:Ann Archer", "TITLE:Engineer", "ORG:Acme", "REV:20260105T000000Z"),
			vc("FN:Ann B.", "TITLE:Engineer", "ORG:Acme", "REV:20260104T000000Z"),
			"Changed on two devices at once. The other device's version, not kept: FN “Ann B.”."},
		{"a removal loses, and a note kept", vc("FN:Ann", "TITLE:Engineer", "NOTE:met at work", "REV:20260101T000000Z"),
			vc("FN:Ann", "TITLE:Lead", "NOTE:met at work", "REV:20260105T000000Z"),
			vc("FN:Ann", "NOTE:met at work", "REV:20260104T000000Z"),
			"met at work\n\nChanged on two devices at once. The other device's version, not kept: no TITLE."},
		{"structured value and a photo", vc("FN:Ann", "N:Archer;Ann;;;", "PHOTO;ENCODING=b;TYPE=JPEG:AAAA", "REV:20260101T000000Z"),
			vc("FN:Ann", "N:Archer-Smith;Ann;;;", "PHOTO;ENCODING=b;TYPE=JPEG:BBBB", "REV:20260103T000000Z"),
			vc("FN:Ann", "N:Bowman;Ann;;;", "PHOTO;ENCODING=b;TYPE=JPEG:CCCC", "REV:20260103T000000Z"),
			"Changed on two devices at once. The other device's version, not kept: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeBoth(t, tc.base, tc.ours, tc.theirs)
			card, err := carddav.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			note := card.Value("NOTE")
			if !strings.HasPrefix(note, strings.ReplaceAll(tc.note, `\n`, "\n")) {
				t.Errorf("NOTE %q, want it to start %q\n%s", note, tc.note, got)
			}
			if tc.name == "structured value and a photo" {
				// Equal REVs: the greater card wins, whichever it is; the
				// other's N is in the note, its components joined.
				kept := card.Value("N")
				other := map[string]string{"Archer-Smith;Ann;;;": "N “Bowman Ann”", "Bowman;Ann;;;": "N “Archer-Smith Ann”"}[kept]
				if other == "" {
					t.Fatalf("merged N %q is neither side's", kept)
				}
				for _, want := range []string{other, "PHOTO changed (the other value is in the history)"} {
					if !strings.Contains(note, want) {
						t.Errorf("NOTE %q lacks %q", note, want)
					}
				}
				if strings.Contains(note, "BBBB") || strings.Contains(note, "CCCC") {
					t.Errorf("NOTE %q copies a photo", note)
				}
			}
		})
	}
}

// TestReplicaMerge edits one card on two replicas and pulls: the store's
// merge uses the function the appliance registers.
func TestReplicaMerge(t *testing.T) {
	s := davtest.Start(t, carddav.New(0))
	k := carddav.New(0)
	s.Store.SetMergeFunc("contacts/", k.MergeFunc())
	const p = "/alice/default/ann.vcf"
	if r := s.Do("alice", "PUT", p, string(vc("FN:Ann", "EMAIL:a@x", "REV:20260101T000000Z")), "Content-Type", "text/vcard"); r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	ctx := context.Background()
	other, err := store.Clone(ctx, store.Remote{URL: s.Store.Path()}, filepath.Join(t.TempDir(), "replica.git"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ents, err := other.List("", "contacts/alice/c/default/o")
	if err != nil || len(ents) != 1 {
		t.Fatalf("replica: %v %v", ents, err)
	}
	if _, err := other.Update(ctx, store.CommitOptions{Message: "edit on the replica"}, func(tx *store.Tx) error {
		return tx.Put(ents[0].Path, vc("FN:Ann", "EMAIL:a@x", "EMAIL:ann@home", "REV:20260102T000000Z"))
	}); err != nil {
		t.Fatal(err)
	}
	if r := s.Do("alice", "PUT", p, string(vc("FN:Ann Archer", "EMAIL:a@x", "REV:20260103T000000Z")), "Content-Type", "text/vcard"); r.Status != 204 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	res, err := s.Store.Pull(ctx, store.Remote{URL: other.Path()}, store.SyncOptions{})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if len(res.Resolved) != 1 {
		t.Errorf("resolved %v, want the card", res.Resolved)
	}
	got := s.Do("alice", "GET", p, "").Body
	for _, want := range []string{"FN:Ann Archer", "EMAIL:ann@home", "EMAIL:a@x"} {
		if !strings.Contains(got, want) {
			t.Errorf("merged card lacks %s:\n%s", want, got)
		}
	}
	// The server's UID index follows the merge.
	if r := s.Do("alice", "PUT", "/alice/default/dup.vcf", string(vc("FN:Dup")), "Content-Type", "text/vcard"); r.Status != 409 {
		t.Errorf("UID clash after merge: got %d, want 409", r.Status)
	}
}

// FuzzValidate feeds arbitrary bytes to the PUT ingestion path: it must
// never panic, and what it accepts must parse again and merge with itself.
//
// make test runs it for 50000 inputs past its seeds (fuzz-short: 50000x).
func FuzzValidate(f *testing.F) {
	f.Add(vc("FN:Ann", "EMAIL:a@x"))
	f.Add([]byte("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:x\r\nFN:X\r\nN:a;b;;;\r\nADR;TYPE=home:;;1 Road;Town;;1;X\r\nEND:VCARD\r\n"))
	f.Add([]byte("BEGIN:VCARD\r\nEND:VCARD\r\n"))
	f.Add([]byte("BEGIN:VCARD\r\n FN:folded\r\n"))
	k := carddav.New(0)
	f.Fuzz(func(t *testing.T, data []byte) {
		uid, err := k.Validate(data, nil)
		if err != nil {
			return
		}
		if uid == "" {
			t.Fatal("accepted without a UID")
		}
		if _, err := carddav.MergeVCard(data, data, data); err != nil {
			t.Fatalf("accepted but does not merge: %v", err)
		}
	})
}
