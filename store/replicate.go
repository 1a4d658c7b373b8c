package store

import "fmt"

// CountNew counts the commits that head reaches and none of old reaches:
// how far head is ahead of them (a replica's "ahead" and "behind"). It
// stops counting at limit (if positive) and returns limit then.
func (s *Store) CountNew(head Hash, old []Hash, limit int) (int, error) {
	if head.IsZero() {
		return 0, nil
	}
	n := 0
	err := s.readObjs(func(o *objReader) error {
		cs, err := newCommits(o, head, old)
		if err != nil {
			return err
		}
		n = len(cs)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: count commits of %s: %w", short(head), err)
	}
	if limit > 0 && n > limit {
		n = limit
	}
	return n, nil
}

// ValidateHistory checks the commits that head reaches and no branch
// reaches as a push of head would be checked (see GitHandler): a replica's
// check of what it fetched before it merges it.
func (s *Store) ValidateHistory(head Hash) error { return s.validateNew(head) }
