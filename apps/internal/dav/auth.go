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
// argon2 check. The password may be one of the user's app passwords
// (store.AuthenticateClient): app is its name, "" for the user's own.
func (h *Handler) authenticate(ctx context.Context, remote string, v *view, name, password string) (app string, err error) {
	sn, err := v.snapshot()
	if err != nil {
		return "", err
	}
	err = h.guard.Check(ctx, remote, name, password, func() error {
		u, err := sn.AuthenticateClient(name, password)
		app = u.AppPassword
		return err
	})
	if errors.Is(err, guard.ErrBusy) {
		return "", &Error{Status: 429, Message: "too many login attempts in progress; try again later"}
	}
	return app, err
}

// appPasswordKey is the context key of the app password a request logged
// in with.
type appPasswordKey struct{}

func withAppPassword(ctx context.Context, app string) context.Context {
	return context.WithValue(ctx, appPasswordKey{}, app)
}

func appPasswordFrom(ctx context.Context) string {
	s, _ := ctx.Value(appPasswordKey{}).(string)
	return s
}

// userKey is the context key of WithUser.
type userKey struct{}

// WithUser returns a context that marks a request as authenticated as user
// by a layer in front of the Handler (a capability token checked by
// signpost/capability.Handler, which also confines the request to the
// token's collection and rights): the Handler then serves it as that
// user without a password. Only code in the server can set it; nothing a
// client sends can.
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

func userFrom(ctx context.Context) (string, bool) {
	u, ok := ctx.Value(userKey{}).(string)
	return u, ok && u != ""
}
