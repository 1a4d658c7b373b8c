package imapd

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Search keys (RFC 3501 6.4.4, RFC 9051 6.4.4) for the commands the layer
// answers that take a search program (SORT, THREAD), parsed into the
// imap.SearchCriteria that Session.Search evaluates.

// searchProgram parses one or more search keys, ANDed, to the end of the
// command.
func (c *command) searchProgram() (*imap.SearchCriteria, error) {
	crit := &imap.SearchCriteria{}
	for {
		k, err := c.searchKey()
		if err != nil {
			return nil, err
		}
		andCrit(crit, k)
		if c.end() {
			return crit, nil
		}
		if !c.sp() {
			return nil, fmt.Errorf("search keys: want a space at %q", c.rest())
		}
	}
}

func (c *command) rest() string {
	r := string(c.args[c.pos:])
	if len(r) > 20 {
		r = r[:20] + "..."
	}
	return r
}

// atom reads an atom (no literal, no quotes).
func (c *command) atom() string {
	start := c.pos
	for c.pos < len(c.args) && isAstringChar(c.args[c.pos]) && c.args[c.pos] != ']' {
		c.pos++
	}
	return string(c.args[start:c.pos])
}

func (c *command) searchKey() (*imap.SearchCriteria, error) {
	if c.pos < len(c.args) && c.args[c.pos] == '(' {
		c.pos++
		crit := &imap.SearchCriteria{}
		for {
			k, err := c.searchKey()
			if err != nil {
				return nil, err
			}
			andCrit(crit, k)
			if c.pos < len(c.args) && c.args[c.pos] == ')' {
				c.pos++
				return crit, nil
			}
			if !c.sp() {
				return nil, fmt.Errorf("search keys: want a space or \")\" at %q", c.rest())
			}
		}
	}
	at := c.rest()
	key := strings.ToUpper(c.atom())
	if key == "" {
		return nil, fmt.Errorf("search keys: want a key at %q", at)
	}
	crit := &imap.SearchCriteria{}
	arg := func() (string, error) {
		if !c.sp() {
			return "", fmt.Errorf("search key %s: want an argument", key)
		}
		s, ok := c.astring()
		if !ok {
			return "", fmt.Errorf("search key %s: bad argument at %q", key, c.rest())
		}
		return s, nil
	}
	date := func() (time.Time, error) {
		s, err := arg()
		if err != nil {
			return time.Time{}, err
		}
		t, err := time.Parse("2-Jan-2006", s)
		if err != nil {
			return time.Time{}, fmt.Errorf("search key %s: bad date %q", key, s)
		}
		return t, nil
	}
	number := func() (int64, error) {
		s, err := arg()
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("search key %s: bad number %q", key, s)
		}
		return n, nil
	}
	flag := func(f imap.Flag, not bool) {
		if not {
			crit.NotFlag = append(crit.NotFlag, f)
		} else {
			crit.Flag = append(crit.Flag, f)
		}
	}
	header := func(name string) error {
		v, err := arg()
		crit.Header = append(crit.Header, imap.SearchCriteriaHeaderField{Key: name, Value: v})
		return err
	}
	var err error
	switch key {
	case "ALL":
	case "ANSWERED", "UNANSWERED":
		flag(imap.FlagAnswered, key[0] == 'U')
	case "DELETED", "UNDELETED":
		flag(imap.FlagDeleted, key[0] == 'U')
	case "DRAFT", "UNDRAFT":
		flag(imap.FlagDraft, key[0] == 'U')
	case "FLAGGED", "UNFLAGGED":
		flag(imap.FlagFlagged, key[0] == 'U')
	case "SEEN", "UNSEEN":
		flag(imap.FlagSeen, key[0] == 'U')
	case "RECENT":
		flag("\\Recent", false)
	case "OLD":
		flag("\\Recent", true)
	case "NEW":
		flag("\\Recent", false)
		flag(imap.FlagSeen, true)
	case "KEYWORD", "UNKEYWORD":
		var s string
		if s, err = arg(); err == nil {
			flag(imap.Flag(s), key[0] == 'U')
		}
	case "BCC", "CC", "FROM", "SUBJECT", "TO":
		err = header(key)
	case "HEADER":
		var name string
		if name, err = arg(); err == nil {
			err = header(name)
		}
	case "BODY":
		var s string
		s, err = arg()
		crit.Body = append(crit.Body, s)
	case "TEXT":
		var s string
		s, err = arg()
		crit.Text = append(crit.Text, s)
	case "BEFORE":
		crit.Before, err = date()
	case "ON":
		crit.Since, err = date()
		crit.Before = crit.Since.Add(24 * time.Hour)
	case "SINCE":
		crit.Since, err = date()
	case "SENTBEFORE":
		crit.SentBefore, err = date()
	case "SENTON":
		crit.SentSince, err = date()
		crit.SentBefore = crit.SentSince.Add(24 * time.Hour)
	case "SENTSINCE":
		crit.SentSince, err = date()
	case "LARGER":
		crit.Larger, err = number()
	case "SMALLER":
		crit.Smaller, err = number()
	case "MODSEQ":
		// RFC 7162 3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence.
		ms := &imap.SearchCriteriaModSeq{}
		save := c.pos
		if c.sp() && c.pos < len(c.args) && (c.args[c.pos] == '"' || c.args[c.pos] == 0) {
			name, ok := c.astring()
			typ := ""
			if ok && c.sp() {
				typ = strings.ToLower(c.atom())
			}
			switch typ {
			case "priv", "shared", "all":
			default:
				return nil, fmt.Errorf("search key MODSEQ: bad entry %q %q", name, typ)
			}
			ms.MetadataName, ms.MetadataType = name, imap.SearchCriteriaMetadataType(typ)
		} else {
			c.pos = save
		}
		var n int64
		if n, err = number(); err == nil {
			ms.ModSeq = uint64(n)
			crit.ModSeq = ms
		}
	case "NOT":
		if !c.sp() {
			return nil, fmt.Errorf("search key NOT: want a key")
		}
		var k *imap.SearchCriteria
		if k, err = c.searchKey(); err == nil {
			crit.Not = append(crit.Not, *k)
		}
	case "OR":
		var a, b *imap.SearchCriteria
		if !c.sp() {
			return nil, fmt.Errorf("search key OR: want two keys")
		}
		if a, err = c.searchKey(); err != nil {
			return nil, err
		}
		if !c.sp() {
			return nil, fmt.Errorf("search key OR: want two keys")
		}
		if b, err = c.searchKey(); err == nil {
			crit.Or = append(crit.Or, [2]imap.SearchCriteria{*a, *b})
		}
	case "UID":
		var s string
		if s, err = arg(); err == nil {
			var set imap.UIDSet
			if s == "$" {
				set = imap.SearchRes()
			} else if err = parseNumSet(s, func(a, b uint32) { set.AddRange(imap.UID(a), imap.UID(b)) }); err != nil {
				err = fmt.Errorf("search key UID: %w", err)
			}
			crit.UID = append(crit.UID, set)
		}
	default:
		if key == "$" {
			crit.UID = append(crit.UID, imap.SearchRes())
			break
		}
		var set imap.SeqSet
		if perr := parseNumSet(key, func(a, b uint32) { set.AddRange(a, b) }); perr != nil {
			return nil, fmt.Errorf("unknown search key %q", key)
		}
		crit.SeqNum = append(crit.SeqNum, set)
	}
	if err != nil {
		return nil, err
	}
	return crit, nil
}

// parseNumSet parses a sequence set ("1:3,5,7:*"; "*" is 0 to add).
func parseNumSet(s string, add func(a, b uint32)) error {
	num := func(v string) (uint32, error) {
		if v == "*" {
			return 0, nil
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("bad number %q in set %q", v, s)
		}
		return uint32(n), nil
	}
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, ":")
		x, err := num(a)
		if err != nil {
			return err
		}
		y := x
		if isRange {
			if y, err = num(b); err != nil {
				return err
			}
		}
		add(x, y)
	}
	return nil
}

// andCrit is crit.And(k), keeping the higher MODSEQ key (which And drops).
func andCrit(crit, k *imap.SearchCriteria) {
	crit.And(k)
	if k.ModSeq != nil && (crit.ModSeq == nil || k.ModSeq.ModSeq > crit.ModSeq.ModSeq) {
		crit.ModSeq = k.ModSeq
	}
}

// hasModSeq reports whether a search program has a MODSEQ key anywhere.
func hasModSeq(c *imap.SearchCriteria) bool {
	if c.ModSeq != nil {
		return true
	}
	for i := range c.Not {
		if hasModSeq(&c.Not[i]) {
			return true
		}
	}
	for _, o := range c.Or {
		if hasModSeq(&o[0]) || hasModSeq(&o[1]) {
			return true
		}
	}
	return false
}
