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
//   - mailbox.json: a MailboxInfo with a name, a UIDVALIDITY and a known
//     layout;
//   - a/b/c/d/KEY.meta (Layout16) or xx/yy/KEY.meta (Layout256): a
//     message's UID (not zero) and size;
//   - a/b/c/d/KEY.eml or xx/yy/KEY.eml: the raw message (any bytes, as
//     APPEND takes them);
//   - flags/HI/N: lines "UID KEY FLAG...".
//
// Messages must be in the folders of their key (shardDir), in either
// layout: a mailbox's items may be in both (see Layout256).
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
		if info.Layout != 0 && info.Layout != Layout256 && info.Layout != Layout16 {
			return fmt.Errorf("mail: mailbox.json: layout %d is not one this version knows (%d or %d)", info.Layout, Layout256, Layout16)
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
	if key == "" || shardDir(itemLayout(sub), key) != path.Dir(sub) {
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
