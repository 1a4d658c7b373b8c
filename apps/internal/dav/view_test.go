package dav

import (
	"testing"

	"github.com/nymote/nymote/store"
)

func TestSplitObjectPath(t *testing.T) {
	r := &repo{kind: "contacts"}
	for _, tc := range []struct {
		path, dir, name string
		ok              bool
	}{
		{objPath(r.collDir("alice", "default"), "a.vcf"), "contacts/alice/c/default/o", "a.vcf", true},
		{propsPath(r.collDir("alice", "default"), "a.vcf"), "contacts/alice/c/default/p", "a.vcf", true},
		{objPath(r.collDir("alice", "o/p"), "x"), "contacts/alice/c/o/c/p/o", "x", true},
		// Collections named like the folders, and their properties.
		{r.collDir("alice", "o") + "/props.json", "", "", false},
		{r.collDir("alice", "p/ab") + "/props.json", "", "", false},
		{r.collDir("alice", "c/o/ab") + "/props.json", "", "", false},
		{r.collDir("alice", "o/ab/cd") + "/props.json", "", "", false},
		{"contacts/alice/home.json", "", "", false},
		{"users/alice", "", "", false},
		{"o/ab/cd/x", "", "", false},
	} {
		dir, name, ok := splitObjectPath(tc.path)
		if dir != tc.dir || name != tc.name || ok != tc.ok {
			t.Errorf("splitObjectPath(%q) = %q, %q, %v; want %q, %q, %v", tc.path, dir, name, ok, tc.dir, tc.name, tc.ok)
		}
	}
	if got := store.Shard("x"); !isShard(got[:2]) || !isShard(got[3:5]) {
		t.Errorf("store.Shard gives %q, whose folders isShard refuses", got)
	}
}
