package mailstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nymote/nymote/store"
)

// Validate is the store.ValidateFunc for mail/ (register it with
// store.SetValidateFunc(Prefix+"/", Validate), beside Merge): it checks an
// item that a git push writes as the IMAP and SMTP servers would have
// written it, so that a push cannot leave a mailbox that the index skips or
// misreads:
//
//   - mailbox.json: a MailboxInfo with a name and a UIDVALIDITY;
//   - xx/yy/KEY.meta: a message's UID (not zero) and size;
//
// with messages at the shard of their key (store.Shard).
//   - xx/yy/KEY.eml: the raw message (any bytes, as APPEND takes them);
//   - flags/HI/N: lines "UID KEY FLAG...".
func Validate(p string, data []byte, _ func(string) ([]byte, error)) error {
	rest, ok := strings.CutPrefix(p, Prefix+"/")
	user, rest, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return errors.New("mail: items live in a user's mailbox folders (mail/USER/BOX/...)")
	}
	if err := store.ValidateUserName(user); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	box, sub, ok := strings.Cut(rest, "/")
	if !ok || box == "" {
		return errors.New("mail: a user's folder holds only mailbox folders")
	}
	switch {
	case sub == "mailbox.json":
		var info MailboxInfo
		if err := json.Unmarshal(data, &info); err != nil {
			return fmt.Errorf("mail: mailbox.json: %v", err)
		}
		if info.Name == "" || !utf8.ValidString(info.Name) {
			return errors.New("mail: mailbox.json: the mailbox has no valid name")
		}
		if info.UIDValidity == 0 {
			return errors.New("mail: mailbox.json: UIDVALIDITY is zero")
		}
		return nil
	case isChunkPath(sub):
		for i, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if uid, err := strconv.ParseUint(f[0], 10, 32); err != nil || uid == 0 || len(f) < 2 {
				return fmt.Errorf("mail: flags line %d: want \"UID KEY FLAG...\"", i+1)
			}
		}
		return nil
	}
	key, ext := splitMsgPath(sub)
	if key == "" || path.Dir(store.Shard(key)) != path.Dir(sub) {
		return fmt.Errorf("mail: %s: not a mailbox item (mailbox.json, flags/..., or a message at its key's shard)", sub)
	}
	switch ext {
	case ".meta":
		var m msgMeta
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("mail: message metadata: %v", err)
		}
		if m.UID == 0 || m.Size < 0 {
			return errors.New("mail: message metadata: UID zero or negative size")
		}
		return nil
	case ".eml":
		// Any bytes, as IMAP APPEND takes them (the size is the store's
		// limit).
		return nil
	}
	return fmt.Errorf("mail: %s: not a mailbox item", sub)
}
