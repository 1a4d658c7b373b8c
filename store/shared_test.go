package store

import (
	"context"
	"errors"
	"testing"
)

// TestPullSharedHistory: with SharedHistory a pull of a history that shares
// no commit with main is refused (main unchanged), one that shares a commit
// is merged, and an empty main takes anything.
func TestPullSharedHistory(t *testing.T) {
	ctx := context.Background()
	a, other, empty := newStore(t), newStore(t), newStore(t)
	put(t, a, "x", "1")
	put(t, other, "y", "2")
	opts := SyncOptions{SharedHistory: true}
	before, _ := a.Resolve("")
	if _, err := a.Pull(ctx, Remote{URL: other.Path()}, opts); !errors.Is(err, ErrUnrelatedHistory) {
		t.Errorf("unrelated pull: %v, want ErrUnrelatedHistory", err)
	}
	if h, _ := a.Resolve(""); h != before {
		t.Errorf("main moved to %s after a refused pull", h)
	}
	if _, err := empty.Pull(ctx, Remote{URL: a.Path()}, opts); err != nil {
		t.Errorf("pull into an empty main: %v", err)
	}
	put(t, empty, "z", "3")
	put(t, a, "x", "4")
	if _, err := a.Pull(ctx, Remote{URL: empty.Path()}, opts); err != nil {
		t.Errorf("pull of a clone's history: %v", err)
	}
	if b, _ := a.Read("", "z"); string(b) != "3" {
		t.Errorf("z = %q after the merge", b)
	}
}
