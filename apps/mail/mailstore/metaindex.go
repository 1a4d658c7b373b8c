package mailstore

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/emersion/go-imap/v2"
)

// decodeMetaIndex reads what the index keeps of a .meta (msgMetaIndex):
// the fields it needs are read where they are, and the summary (most of
// the .meta) is skipped without being decoded, which is most of the work
// of loading a user's index. Anything it does not expect (a field it
// does not know, an escape in a string, a value of another type) it
// leaves to encoding/json, so that it reads what json.Unmarshal reads.
// One difference: the summary is not checked, so a .meta whose summary is
// not valid JSON is loaded (its summary reads as empty, as any summary
// that cannot be read: Message.Summary) rather than skipped as damaged.
func decodeMetaIndex(data []byte) (msgMetaIndex, error) {
	if m, ok := scanMetaIndex(data); ok {
		return m, nil
	}
	var m msgMetaIndex
	err := json.Unmarshal(data, &m)
	return m, err
}

// scanMetaIndex is decodeMetaIndex's fast path: false if data is not a
// plain JSON object of the fields of msgMeta with values of their types.
func scanMetaIndex(data []byte) (m msgMetaIndex, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return m, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return m, skipSpace(data, i+1) == len(data)
	}
	for {
		key, j, ok := plainString(data, i)
		if !ok {
			return m, false
		}
		i = skipSpace(data, j)
		if i >= len(data) || data[i] != ':' {
			return m, false
		}
		i = skipSpace(data, i+1)
		switch key {
		case "uid", "size", "modseq":
			j = i
			for j < len(data) && data[j] >= '0' && data[j] <= '9' {
				j++
			}
			if j == i || (data[i] == '0' && j > i+1) {
				return m, false
			}
			switch key {
			case "uid":
				v, err := strconv.ParseUint(string(data[i:j]), 10, 32)
				if err != nil {
					return m, false
				}
				m.UID = imap.UID(v)
			case "size":
				v, err := strconv.ParseInt(string(data[i:j]), 10, 64)
				if err != nil {
					return m, false
				}
				m.Size = v
			default:
				v, err := strconv.ParseUint(string(data[i:j]), 10, 64)
				if err != nil {
					return m, false
				}
				m.ModSeq = v
			}
		case "space", "date":
			v, k, ok := plainString(data, i)
			if !ok {
				return m, false
			}
			if key == "space" {
				m.Space = v
			} else {
				// As time.Time's UnmarshalJSON reads it.
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					return m, false
				}
				m.Date = t
			}
			j = k
		case "cache":
			if j, ok = skipValue(data, i); !ok {
				return m, false
			}
		default:
			return m, false
		}
		i = skipSpace(data, j)
		if i >= len(data) {
			return m, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return m, skipSpace(data, i+1) == len(data)
		default:
			return m, false
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at data[i:], which must have no
// escapes and no control characters, and returns it and the index after
// it.
func plainString(data []byte, i int) (string, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return "", i, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return string(data[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", i, false
		}
	}
	return "", i, false
}

// skipValue returns the index after the JSON value at data[i:], checking
// only that its brackets balance and its strings end: encoding/json
// checks the rest where the summary is read (Message.Summary).
func skipValue(data []byte, i int) (int, bool) {
	start, depth := i, 0
	for ; i < len(data); i++ {
		switch c := data[i]; c {
		case '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
			if i >= len(data) {
				return i, false
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i, i > start // the end of a number or literal
			}
			depth--
		default:
			if depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
				return i, i > start // the end of a number or literal
			}
			continue
		}
		if depth == 0 {
			return i + 1, true
		}
	}
	return i, depth == 0 && i > start
}
