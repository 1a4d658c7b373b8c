package store

import (
	"errors"
	"fmt"
	"strings"
)

// Copy copies what the transaction sees at from (an item, or every item
// under a folder) to the same paths under to, by blob hash: no content is
// read or held, so copying a folder costs its entries, not its bytes. It
// returns how many items it copied; a path that holds nothing copies none.
func (tx *Tx) Copy(from, to string) (int, error) {
	if err := ValidatePath(from); err != nil {
		return 0, err
	}
	if err := ValidatePath(to); err != nil {
		return 0, err
	}
	if from == to || strings.HasPrefix(to, from+"/") {
		return 0, fmt.Errorf("store: copy %s into itself (%s)", from, to)
	}
	if c, ok := tx.changes[from]; ok && !c.del {
		tx.changes[to] = c
		return 1, nil
	}
	ents, err := tx.List(from)
	if err != nil {
		return 0, err
	}
	if len(ents) == 0 {
		// Not a folder: an item of the base, if any.
		if _, ok := tx.changes[from]; ok {
			return 0, nil // deleted in this transaction
		}
		e, err := tx.base.Stat(from)
		if errors.Is(err, ErrNotExist) || err == nil && e.Dir {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("store: copy %s: %w", from, err)
		}
		tx.changes[to] = change{hash: e.Hash}
		return 1, nil
	}
	for _, e := range ents {
		c, ok := tx.changes[e.Path]
		if !ok {
			// An item of the base commit: its blob is in the store.
			c = change{hash: e.Hash}
		}
		tx.changes[to+strings.TrimPrefix(e.Path, from)] = c
	}
	return len(ents), nil
}
