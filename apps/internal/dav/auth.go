package dav

import (
	"context"
	"errors"

	"github.com/nymote/nymote/apps/internal/guard"
)

// authenticate checks a user's password against the users of view v,
// through the rate limit of Options.Auth (see guard.Auth): failures from
// the client's host and against the account delay later attempts, and a
// host with too many attempts in flight is refused (ErrBusy, answered
// 429). DAV clients send their password with every request: a login that
// succeeded skips the delays, and the store remembers the success (by a
// hash of name, password and the stored hash), so such a request costs no
// argon2 check.
func (h *Handler) authenticate(ctx context.Context, remote string, v *view, name, password string) error {
	sn, err := v.snapshot()
	if err != nil {
		return err
	}
	err = h.guard.Check(ctx, remote, name, password, func() error {
		_, err := sn.Authenticate(name, password)
		return err
	})
	if errors.Is(err, guard.ErrBusy) {
		return &Error{Status: 429, Message: "too many login attempts in progress; try again later"}
	}
	return err
}
