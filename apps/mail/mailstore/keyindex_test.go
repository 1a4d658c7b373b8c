package mailstore

import (
	"fmt"
	"math/rand"
	"testing"
)

// TestKeyIndex checks keyIndex against a map through random puts
// (new keys and replacements) and deletes (present and absent keys),
// growing to thousands of keys and shrinking back to none.
func TestKeyIndex(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	var x keyIndex
	want := map[string]*Message{}
	check := func(step int) {
		t.Helper()
		if x.n != len(want) {
			t.Fatalf("step %d: %d keys, want %d", step, x.n, len(want))
		}
		for k, m := range want {
			if got := x.get(k); got != m {
				t.Fatalf("step %d: get(%q) = %p, want %p", step, k, got, m)
			}
		}
		if x.get("absent") != nil {
			t.Fatalf("step %d: get of an absent key found one", step)
		}
		held := 0
		for _, m := range x.slots {
			if m != nil {
				held++
			}
		}
		if held != len(want) || (len(x.slots) > 0 && x.n*4 > len(x.slots)*3) {
			t.Fatalf("step %d: %d slots held of %d, want %d at most 3/4 full", step, held, len(x.slots), len(want))
		}
	}
	for step := range 20000 {
		keys := 3000
		if step > 12000 {
			keys = 300 // fewer keys: deletes empty the index, which shrinks
		}
		k := fmt.Sprintf("k%d", r.Intn(keys))
		switch {
		case step > 12000 || r.Intn(3) == 0:
			x.del(k)
			delete(want, k)
		default:
			m := &Message{Key: k}
			x.put(m)
			want[k] = m
		}
		if step%997 == 0 {
			check(step)
		}
	}
	for k := range want {
		x.del(k)
		delete(want, k)
	}
	check(-1)
	if len(x.slots) > 16 {
		t.Errorf("empty index keeps %d slots", len(x.slots))
	}
}
