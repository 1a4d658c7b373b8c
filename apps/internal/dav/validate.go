package dav

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/nymote/nymote/store"
)

// ValidateFunc is the store.ValidateFunc for a kind's prefix (register it
// with store.SetValidateFunc(k.Name()+"/", ValidateFunc(k, max)) beside
// MergeFunc): it checks an item that a git push writes as a PUT, MKCOL or
// PROPPATCH would have: objects must be within maxSize bytes (zero means
// DefaultMaxObjectSize), at the shard of their name, in a collection (its
// props.json in the same commit), and, in an address book or calendar,
// pass the kind's Validate for that collection (a vCard or iCalendar
// object with its UID, of a component the calendar takes); the collection
// and home records must be the JSON the server writes (see repo.go's
// layout).
func ValidateFunc(k Kind, maxSize int64) store.ValidateFunc {
	if maxSize <= 0 {
		maxSize = DefaultMaxObjectSize
	}
	return func(p string, data []byte, read func(string) ([]byte, error)) error {
		if err := validateItem(k, maxSize, p, data, read); err != nil {
			return fmt.Errorf("%s: %w", k.Name(), err)
		}
		return nil
	}
}

func validateItem(k Kind, maxSize int64, p string, data []byte, read func(string) ([]byte, error)) error {
	rest, ok := strings.CutPrefix(p, k.Name()+"/")
	user, rest, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return errors.New("items live in a user's home (KIND/USER/...)")
	}
	if err := store.ValidateUserName(user); err != nil {
		return err
	}
	if rest == "home.json" {
		return jsonObject("home.json", data, nil)
	}
	segs := strings.Split(rest, "/")
	// c/COLL (c/CHILD)* then props.json, o/xx/yy/NAME or p/xx/yy/NAME.
	i := 0
	for i+1 < len(segs) && segs[i] == "c" {
		i += 2
	}
	if i == 0 {
		return fmt.Errorf("%s: not in a collection (USER/c/COLLECTION/...)", rest)
	}
	tail := segs[i:]
	switch {
	case len(tail) == 1 && tail[0] == "props.json":
		var c Collection
		if err := jsonObject("props.json", data, &c); err != nil {
			return err
		}
		switch c.Type {
		case TypePlain, TypeAddressBook, TypeCalendar:
			return nil
		}
		return fmt.Errorf("props.json: collection type %q", c.Type)
	case len(tail) == 4 && (tail[0] == "o" || tail[0] == "p"):
		name := tail[3]
		if path.Dir(store.Shard(name)) != tail[1]+"/"+tail[2] {
			return fmt.Errorf("%s: not at the shard of its name (%s)", rest, store.Shard(name))
		}
		if tail[0] == "p" {
			return jsonObject("dead properties", data, &map[string]string{})
		}
		if int64(len(data)) > maxSize {
			return fmt.Errorf("%s: %d bytes; objects are at most %d bytes", name, len(data), maxSize)
		}
		// The collection says what its objects are: a plain WebDAV
		// collection takes any file.
		dir := k.Name() + "/" + user + "/" + strings.Join(segs[:i], "/")
		b, err := read(dir + "/props.json")
		if err != nil {
			return fmt.Errorf("%s: the collection has no props.json: %w", name, err)
		}
		c := &Collection{User: user}
		if err := jsonObject("props.json", b, c); err != nil {
			return err
		}
		if c.Type == TypePlain {
			return nil
		}
		if _, err := k.Validate(data, c); err != nil {
			var de *Error
			if errors.As(err, &de) && de.Message != "" {
				return fmt.Errorf("%s: %s", name, de.Message)
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("%s: not a collection item (props.json, o/.../NAME or p/.../NAME)", rest)
}

// jsonObject checks that data is a JSON object (decoded into v if not nil).
func jsonObject(what string, data []byte, v any) error {
	if v == nil {
		v = &map[string]json.RawMessage{}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %v", what, err)
	}
	return nil
}
