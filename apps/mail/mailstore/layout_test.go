package mailstore

import (
	"fmt"
	"path"
	"strings"
	"testing"

	"github.com/nymote/nymote/store"
)

// Layout256 is where earlier versions put a message's items: store.Shard.
func TestLayout256IsStoreShard(t *testing.T) {
	for i := range 1000 {
		key := fmt.Sprintf("k%d", i)
		if got, want := shardDir(Layout256, key), path.Dir(store.Shard(key)); got != want {
			t.Fatalf("shardDir(Layout256, %q) = %s, want %s", key, got, want)
		}
		if l16, l256 := shardDir(Layout16, key), shardDir(Layout256, key); strings.ReplaceAll(l16, "/", "") != strings.ReplaceAll(l256, "/", "") || strings.Count(l16, "/") != 3 {
			t.Fatalf("shardDir(Layout16, %q) = %s, want the digits of %s one a level", key, l16, l256)
		}
	}
}
