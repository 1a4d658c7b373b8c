package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// AppPassword is one of a user's app passwords, as listed: a password that
// the store made for one client ("phone", "laptop mail"), which the
// protocols (IMAP, SMTP submission, CardDAV, CalDAV: AuthenticateClient)
// accept in place of the user's password, and which the user revokes alone
// when the device is lost. The web console, the API and git take the
// user's own password only (Authenticate), so an app password cannot make
// others or change the password.
//
// The list is in the user's record (users/NAME), so it replicates and the
// history shows "user app-password add alice phone"; each hash, an
// argon2id hash like a login password's, is in CredentialsRef beside the
// user's (under the key NAME+app-ID), never in the history.
type AppPassword struct {
	// ID is the password's first group: a login names the app password
	// it is, so that it costs one hash check.
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// appKeySep separates a user's name from an app password's ID in the keys
// of CredentialsRef; user names cannot hold it.
const appKeySep = "+app-"

func appKey(user, id string) string { return user + appKeySep + id }

// App passwords are made by the store: an ID of appIDLen characters, then
// appGroups groups of appGroupLen, of appAlphabet (lower-case letters and
// digits without 0, 1, l, o), joined by '-': "k3fj2a-abcd-efgh-ijkm-npqr-stuv",
// 31 characters of which the 20 after the ID are secret (over 100 bits).
const (
	appAlphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	appIDLen    = 6
	appGroups   = 5
	appGroupLen = 4
	// MaxAppPasswords bounds a user's app passwords.
	MaxAppPasswords = 50
	maxAppNameLen   = 64
)

// appPasswordID returns the ID of a password in the form of an app
// password.
func appPasswordID(pw string) (string, bool) {
	if len(pw) != appIDLen+appGroups*(1+appGroupLen) {
		return "", false
	}
	for i := 0; i < len(pw); i++ {
		c := pw[i]
		dash := i >= appIDLen && (i-appIDLen)%(1+appGroupLen) == 0
		if dash != (c == '-') || (!dash && strings.IndexByte(appAlphabet, c) < 0) {
			return "", false
		}
	}
	return pw[:appIDLen], true
}

func randomAppChars(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = appAlphabet[int(b[i])%len(appAlphabet)] // 256 is a multiple of 32: no bias
	}
	return string(b), nil
}

// ValidateAppPasswordName accepts 1 to 64 characters without control
// characters and without space at either end: the name says which client
// holds the password ("phone", "Thunderbird at work").
func ValidateAppPasswordName(name string) error {
	switch {
	case name == "":
		return errors.New("store: app password name: empty; name the client that will use it (e.g. phone)")
	case !utf8.ValidString(name):
		return fmt.Errorf("store: app password name %q: not valid UTF-8", name)
	case utf8.RuneCountInString(name) > maxAppNameLen:
		return fmt.Errorf("store: app password name %q: at most %d characters", name, maxAppNameLen)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("store: app password name %q: starts or ends with space", name)
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) >= 0:
		return fmt.Errorf("store: app password name %q: holds a control character", name)
	}
	return nil
}

// AddAppPassword makes a new app password for user, named after the client
// that will use it (unique among the user's), and returns it: the only
// time it is shown, since only its hash is kept.
func (s *Store) AddAppPassword(ctx context.Context, user, name string) (AppPassword, string, error) {
	if err := ValidateAppPasswordName(name); err != nil {
		return AppPassword{}, "", err
	}
	// Made and hashed before the writer lock is taken (argon2 takes a
	// while).
	id, err := randomAppChars(appIDLen)
	if err != nil {
		return AppPassword{}, "", err
	}
	secret, err := randomAppChars(appGroups * appGroupLen)
	if err != nil {
		return AppPassword{}, "", err
	}
	var b strings.Builder
	b.WriteString(id)
	for i := 0; i < appGroups; i++ {
		b.WriteByte('-')
		b.WriteString(secret[i*appGroupLen : (i+1)*appGroupLen])
	}
	pw := b.String()
	hash, err := hashPassword(pw)
	if err != nil {
		return AppPassword{}, "", err
	}
	ap := AppPassword{ID: id, Name: name, Created: time.Now().UTC().Truncate(time.Second)}
	err = s.modifyUserFn(ctx, user, "user app-password add "+user+" "+name, func(u *userRecord, m map[string]string) error {
		if len(u.AppPasswords) >= MaxAppPasswords {
			return fmt.Errorf("store: user %s: already %d app passwords (the most); revoke one first", user, len(u.AppPasswords))
		}
		for _, a := range u.AppPasswords {
			if a.Name == name {
				return fmt.Errorf("store: user %s: app password %q: %w", user, name, ErrExists)
			}
			if a.ID == id { // one in 2^30
				return fmt.Errorf("store: user %s: app password ID %s is taken; try again", user, id)
			}
		}
		u.AppPasswords = append(u.AppPasswords, ap)
		m[appKey(user, id)] = hash
		return nil
	})
	if err != nil {
		return AppPassword{}, "", err
	}
	return ap, pw, nil
}

// AppPasswords lists user's app passwords, oldest first.
func (s *Store) AppPasswords(user string) ([]AppPassword, error) {
	sn, err := s.Snapshot("")
	if err != nil {
		return nil, err
	}
	u, err := getUser(sn.Read, user)
	if err != nil {
		return nil, err
	}
	return u.AppPasswords, nil
}

// DeleteAppPassword revokes one of user's app passwords, given by name or
// ID: logins with it fail from then on.
func (s *Store) DeleteAppPassword(ctx context.Context, user, nameOrID string) error {
	return s.modifyUserFn(ctx, user, "user app-password del "+user+" "+nameOrID, func(u *userRecord, m map[string]string) error {
		for i, a := range u.AppPasswords {
			if a.Name == nameOrID || a.ID == nameOrID {
				u.AppPasswords = append(u.AppPasswords[:i:i], u.AppPasswords[i+1:]...)
				delete(m, appKey(user, a.ID))
				return nil
			}
		}
		return fmt.Errorf("store: user %s: app password %q: %w", user, nameOrID, ErrNotExist)
	})
}

// modifyUserFn changes a user's record and the password hashes (fn edits a
// copy of them) in one commit under the writer lock. The hashes are
// written first, as for modifyUser.
func (s *Store) modifyUserFn(ctx context.Context, name, msg string, fn func(*userRecord, map[string]string) error) error {
	_, err := s.Update(ctx, CommitOptions{Message: msg}, func(tx *Tx) error {
		u, err := getUser(tx.Get, name)
		if err != nil {
			return err
		}
		cur, err := s.passwordHashes()
		if err != nil {
			return err
		}
		m := make(map[string]string, len(cur)+1)
		for k, v := range cur {
			m[k] = v
		}
		if err := fn(&u, m); err != nil {
			return err
		}
		if err := putUser(tx, u); err != nil {
			return err
		}
		return s.setPasswordHashesLocked("credentials: "+msg, func(all map[string]string) {
			for k := range all {
				if _, ok := m[k]; !ok {
					delete(all, k)
				}
			}
			for k, v := range m {
				all[k] = v
			}
		})
	})
	if err == nil {
		s.authc.forget(name)
	}
	return err
}

// AuthenticateClient is Authenticate for the protocols' clients (IMAP,
// SMTP submission, CardDAV, CalDAV): it also accepts one of the user's app
// passwords, and the User it returns names it (User.AppPassword). It costs
// one password hash check, like Authenticate.
func (s *Store) AuthenticateClient(name, password string) (User, error) {
	sn, err := s.Snapshot("")
	if err != nil {
		return User{}, err
	}
	return sn.AuthenticateClient(name, password)
}
