package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Credentials between a person's replicas (issue 16). A login password and
// app passwords are the person's, not a node's: they must work on every
// node. Their hashes must still never enter the history (a person may clone
// parts of it, and a hash there could be attacked offline). So:
//
//   - The user's record (users/NAME, which replicates) is the version: it
//     names the current password by its id (passwordID: a digest of the
//     hash that reveals nothing), when it was set (PasswordSet), and the
//     user's app passwords by ID. Records changed on two nodes merge per
//     user with MergeUserRecords: the password set last wins (last writer
//     wins per user), app passwords merge as a set (one revoked on either
//     node is gone), a deleted user stays deleted (the missing record is
//     the tombstone: every hash of the user is dropped with it).
//   - The hashes themselves travel beside the history, over the replication
//     endpoint that only peers reach (package replica: their name and
//     shared token, or the tunnel): PeerCredentials gives the hashes that
//     this node's records name, and a node that lacks the hash its record
//     names (CredentialsWanted) fetches its peers' and keeps those whose ids
//     its records name (AcceptPeerCredentials). Nothing else is taken, so a
//     peer cannot set a password that the replicated record does not name.
//   - A login checks the hash against the record: a hash whose id the
//     record does not name is not used (a password changed on another node
//     stops working here as soon as the record arrives, before the new hash
//     does). A change here keeps the previous hash (NAME+prev) until its
//     record is committed, so that a crash between the two leaves the old
//     password, which the record still names, in force.
//
// Node secrets (the TLS key, replication tokens, signpost keys) are node
// files and never travel.

// prevSuffix keys the previous password hash of a user during a change.
const prevSuffix = "+prev"

// userHash returns the hash among hashes that the record rec names for its
// login password ("" if none does).
func userHash(hashes map[string]string, rec userRecord) string {
	h := hashes[rec.Name]
	if rec.Password == "" || passwordID(h) == rec.Password {
		return h
	}
	if p := hashes[rec.Name+prevSuffix]; p != "" && passwordID(p) == rec.Password {
		return p
	}
	return ""
}

// headUsers returns the records of the head's users by name.
func (s *Store) headUsers() (map[string]userRecord, error) {
	sn, err := s.Snapshot("")
	if err != nil {
		return nil, err
	}
	ents, err := sn.ReadDir(UsersPrefix)
	if err != nil {
		return nil, err
	}
	out := map[string]userRecord{}
	for _, e := range ents {
		if e.Dir {
			continue
		}
		u, err := getUser(sn.Read, Unshard(e.Path))
		if err != nil {
			return nil, err
		}
		out[u.Name] = u
	}
	return out, nil
}

// PeerCredentials returns the password hashes that this node's user
// records name (login passwords by user name, app passwords by
// NAME+app-ID), for a peer of this node (package replica's credentials
// endpoint) and nobody else.
func (s *Store) PeerCredentials() (map[string]string, error) {
	users, err := s.headUsers()
	if err != nil {
		return nil, err
	}
	hashes, err := s.passwordHashes()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, u := range users {
		if h := userHash(hashes, u); h != "" {
			out[u.Name] = h
		}
		for _, a := range u.AppPasswords {
			if h := hashes[appKey(u.Name, a.ID)]; h != "" {
				out[appKey(u.Name, a.ID)] = h
			}
		}
	}
	return out, nil
}

// CredentialsWanted reports whether a user record names a hash (a login
// password or an app password) that this node does not have.
func (s *Store) CredentialsWanted() (bool, error) {
	users, err := s.headUsers()
	if err != nil {
		return false, err
	}
	hashes, err := s.passwordHashes()
	if err != nil {
		return false, err
	}
	for _, u := range users {
		if u.Password != "" && userHash(hashes, u) == "" {
			return true, nil
		}
		for _, a := range u.AppPasswords {
			if hashes[appKey(u.Name, a.ID)] == "" {
				return true, nil
			}
		}
	}
	return false, nil
}

// AcceptPeerCredentials keeps, of the hashes a peer gave (PeerCredentials
// there), those that this node's records name and it lacks, and drops the
// hashes that no record names any more (a user deleted, an app password
// revoked, a password changed elsewhere): one credentials change, under
// the writer lock. It returns how many hashes it took.
func (s *Store) AcceptPeerCredentials(ctx context.Context, in map[string]string) (int, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	users, err := s.headUsers()
	if err != nil {
		return 0, err
	}
	cur, err := s.passwordHashes()
	if err != nil {
		return 0, err
	}
	next := map[string]string{}
	took := 0
	var names []string
	for _, u := range users {
		h := userHash(cur, u)
		if h == "" && u.Password != "" {
			if p := in[u.Name]; validHash(p) && passwordID(p) == u.Password {
				h = p
				took++
				names = append(names, u.Name)
			}
		}
		if h != "" {
			next[u.Name] = h
		}
		// (A previous hash, NAME+prev, goes: no change is in progress
		// while the writer lock is held, and userHash took it if the
		// record still names it.)
		for _, a := range u.AppPasswords {
			k := appKey(u.Name, a.ID)
			switch p := in[k]; {
			case cur[k] != "":
				next[k] = cur[k]
			case validHash(p):
				next[k] = p
				took++
				names = append(names, u.Name+" app password "+a.Name)
			}
		}
	}
	if sameHashes(cur, next) {
		return 0, nil
	}
	sort.Strings(names)
	msg := "credentials: from a peer"
	if len(names) > 0 {
		msg += ": " + strings.Join(names, ", ")
	}
	err = s.setPasswordHashesLocked(msg, func(m map[string]string) {
		clear(m)
		for k, v := range next {
			m[k] = v
		}
	})
	if err != nil {
		return 0, err
	}
	for _, u := range users {
		s.authc.forget(u.Name)
	}
	return took, nil
}

func sameHashes(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// validHash reports whether h looks like a hash that hashPassword makes
// (checkPassword bounds its cost again at each check).
func validHash(h string) bool {
	parts := strings.Split(h, "$")
	return len(parts) == 6 && parts[1] == "argon2id" && len(h) < 256 && !strings.ContainsAny(h, "\n\r\x00 ")
}

// MergeUserRecords is the merge function of users/ for replicas (package
// replica registers it): a user's record changed on two nodes. A deletion
// wins (the tombstone of a user: its hashes go with it). Otherwise the
// password set last wins (PasswordSet, then the greater id on a tie: the
// same choice on every node), app passwords merge as a set by ID (one
// added on either node is kept, one revoked on either is gone), and each
// other field takes the side that changed it (the greater record where
// both did).
func MergeUserRecords(p string, base, ours, theirs []byte) ([]byte, error) {
	if ours == nil || theirs == nil {
		return nil, nil
	}
	var b, o, t userRecord
	if base != nil {
		if err := json.Unmarshal(base, &b); err != nil {
			return nil, fmt.Errorf("store: %s: base: %v", p, err)
		}
	}
	if err := json.Unmarshal(ours, &o); err != nil {
		return nil, fmt.Errorf("store: %s: %v", p, err)
	}
	if err := json.Unmarshal(theirs, &t); err != nil {
		return nil, fmt.Errorf("store: %s: %v", p, err)
	}
	g := o // the greater record, for fields both sides changed
	if bytes.Compare(theirs, ours) > 0 {
		g = t
	}
	m := g
	pick := func(bv, ov, tv any) int { // 1: ours, 2: theirs, 0: greater
		bj, _ := json.Marshal(bv)
		oj, _ := json.Marshal(ov)
		tj, _ := json.Marshal(tv)
		switch {
		case bytes.Equal(oj, bj):
			return 2
		case bytes.Equal(tj, bj):
			return 1
		}
		return 0
	}
	switch pick(b.Git, o.Git, t.Git) {
	case 1:
		m.Git = o.Git
	case 2:
		m.Git = t.Git
	}
	switch pick(b.Quota, o.Quota, t.Quota) {
	case 1:
		m.Quota = o.Quota
	case 2:
		m.Quota = t.Quota
	}
	switch {
	case o.PasswordSet.After(t.PasswordSet) || (o.PasswordSet.Equal(t.PasswordSet) && o.Password > t.Password):
		m.Password, m.PasswordSet = o.Password, o.PasswordSet
	default:
		m.Password, m.PasswordSet = t.Password, t.PasswordSet
	}
	inBase := map[string]bool{}
	for _, a := range b.AppPasswords {
		inBase[a.ID] = true
	}
	has := func(l []AppPassword, id string) bool {
		for _, a := range l {
			if a.ID == id {
				return true
			}
		}
		return false
	}
	m.AppPasswords = nil
	for _, l := range [][]AppPassword{o.AppPasswords, t.AppPasswords} {
		for _, a := range l {
			if has(m.AppPasswords, a.ID) || (inBase[a.ID] && !(has(o.AppPasswords, a.ID) && has(t.AppPasswords, a.ID))) {
				continue
			}
			m.AppPasswords = append(m.AppPasswords, a)
		}
	}
	sort.SliceStable(m.AppPasswords, func(i, j int) bool { return m.AppPasswords[i].Created.Before(m.AppPasswords[j].Created) })
	m.Hash = ""
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// passwordClock is the clock of PasswordSet.
func passwordClock() time.Time { return time.Now().UTC() }
