// Package mailauth checks a mail client's login for IMAP and SMTP
// submission alike: the login name as the client gives it ("alice" or
// "alice@DOMAIN") is mapped to a store user, and the password is checked
// against the store through the connection guard's rate limit
// (guard.Auth). The protocols only turn the outcome into their own
// replies and log lines.
package mailauth

import (
	"context"
	"strings"

	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/store"
)

// UserName turns a login name ("alice" or "alice@DOMAIN") into a store
// user name, or "" if it names a domain not in domains.
func UserName(login string, domains []string) string {
	login = strings.ToLower(login)
	local, dom, ok := strings.Cut(login, "@")
	if !ok {
		return login
	}
	for _, d := range domains {
		if strings.EqualFold(d, dom) {
			return local
		}
	}
	return ""
}

// Login checks login and password (the user's own or one of the user's
// app passwords: store.AuthenticateClient), given from the client at
// remote (its address), against st's users through auth's rate limit: the attempt
// waits the delay that recent failures from its host and against its
// account earn (guard.Auth.Check). It returns the store user's name, and
// the account the attempt counts against (the user's name, or the login
// as given when it names no user here), for the caller's log.
//
// err is guard.ErrBusy when the attempt was refused unchecked,
// store.ErrAuthFailed for a wrong name or password, or another error of
// the store.
func Login(ctx context.Context, auth *guard.Auth, st *store.Store, domains []string, remote, login, password string) (name, account string, err error) {
	name = UserName(login, domains)
	account = name
	if account == "" {
		account = login
	}
	err = auth.Check(ctx, remote, account, password, func() error {
		if name == "" || store.ValidateUserName(name) != nil {
			return store.ErrAuthFailed
		}
		_, err := st.AuthenticateClient(name, password)
		return err
	})
	return name, account, err
}
