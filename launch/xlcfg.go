package launch

import (
	"fmt"
	"strings"
)

// XLValue is a setting of an xl configuration: an atom (a string or a
// number, kept as written) or a list of atoms.
type XLValue struct {
	Atom   string
	List   []string
	IsList bool
}

// ParseXLConfig parses an xl configuration file (xl.cfg(5)) with the
// grammar of Xen's libxlu (tools/libs/util/libxlu_cfg_{l.l,y.y}), so that
// it rejects what xl rejects when it reads a file: settings are
// IDENT = VALUE or IDENT += VALUE, ended by a newline or ';'; an IDENT is
// [a-z][_0-9a-z]*; a value is a number ([0-9][0-9a-fx]*), a string in
// single quotes (no escapes) or double quotes (with C escapes), or a list
// of those in brackets (no nesting; newlines and a trailing comma allowed
// inside); '#' starts a comment. Later settings replace earlier ones; +=
// appends to a list.
func ParseXLConfig(src string) (map[string]XLValue, error) {
	toks, err := lexXL(src)
	if err != nil {
		return nil, err
	}
	cfg := map[string]XLValue{}
	i := 0
	peek := func() xlToken { return toks[i] }
	next := func() xlToken { t := toks[i]; i++; return t }
	skipNL := func() {
		for peek().kind == '\n' {
			i++
		}
	}
	for peek().kind != 0 {
		t := next()
		if t.kind == '\n' || t.kind == ';' {
			continue
		}
		if t.kind != 'i' {
			return nil, fmt.Errorf("line %d: want a setting name, got %s", t.line, t)
		}
		op := next()
		if op.kind != '=' && op.kind != '+' {
			return nil, fmt.Errorf("line %d: want = or += after %s, got %s", op.line, t.text, op)
		}
		var v XLValue
		switch vt := next(); vt.kind {
		case 's', 'n':
			v.Atom = vt.text
		case '[':
			v.IsList = true
			skipNL()
			for peek().kind != ']' {
				a := next()
				if a.kind != 's' && a.kind != 'n' {
					return nil, fmt.Errorf("line %d: want a string or number in the list %s, got %s", a.line, t.text, a)
				}
				v.List = append(v.List, a.text)
				skipNL()
				if peek().kind == ',' {
					i++
					skipNL()
				} else if peek().kind != ']' {
					return nil, fmt.Errorf("line %d: want , or ] in the list %s, got %s", peek().line, t.text, peek())
				}
			}
			i++
		default:
			return nil, fmt.Errorf("line %d: want a value for %s, got %s", vt.line, t.text, vt)
		}
		if end := peek(); end.kind != '\n' && end.kind != ';' && end.kind != 0 {
			return nil, fmt.Errorf("line %d: want the end of the setting %s, got %s", end.line, t.text, end)
		}
		if op.kind == '+' {
			old, ok := cfg[t.text]
			if ok && !old.IsList || !v.IsList {
				return nil, fmt.Errorf("line %d: += needs lists (%s)", op.line, t.text)
			}
			v.List = append(old.List, v.List...)
		}
		cfg[t.text] = v
	}
	return cfg, nil
}

// xlToken is a token of an xl configuration: kind is 'i' (name), 'n'
// (number), 's' (string), '+' (+=), 0 (end) or the character itself.
type xlToken struct {
	kind byte
	text string
	line int
}

func (t xlToken) String() string {
	switch t.kind {
	case 0:
		return "the end of the file"
	case '\n':
		return "the end of the line"
	case 'i', 'n':
		return fmt.Sprintf("%q", t.text)
	case 's':
		return "a string"
	}
	return fmt.Sprintf("%q", string(t.kind))
}

func lexXL(src string) ([]xlToken, error) {
	var toks []xlToken
	line := 1
	isLower := func(c byte) bool { return c >= 'a' && c <= 'z' }
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '\n':
			toks = append(toks, xlToken{kind: '\n', line: line})
			line++
			i++
		case c == '=' || c == ',' || c == '[' || c == ']' || c == ';':
			toks = append(toks, xlToken{kind: c, line: line})
			i++
		case c == '+' && i+1 < len(src) && src[i+1] == '=':
			toks = append(toks, xlToken{kind: '+', line: line})
			i += 2
		case isLower(c):
			j := i + 1
			for j < len(src) && (isLower(src[j]) || isDigit(src[j]) || src[j] == '_') {
				j++
			}
			toks = append(toks, xlToken{kind: 'i', text: src[i:j], line: line})
			i = j
		case isDigit(c):
			j := i + 1
			for j < len(src) && (isDigit(src[j]) || (src[j] >= 'a' && src[j] <= 'f') || src[j] == 'x') {
				j++
			}
			toks = append(toks, xlToken{kind: 'n', text: src[i:j], line: line})
			i = j
		case c == '\'' || c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != c; j++ {
				if src[j] == '\n' {
					return nil, fmt.Errorf("line %d: unterminated string", line)
				}
				if c == '"' && src[j] == '\\' && j+1 < len(src) {
					j++
					switch src[j] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					default:
						b.WriteByte(src[j])
					}
					continue
				}
				b.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("line %d: unterminated string", line)
			}
			toks = append(toks, xlToken{kind: 's', text: b.String(), line: line})
			i = j + 1
		default:
			return nil, fmt.Errorf("line %d: unexpected character %q", line, c)
		}
	}
	return append(toks, xlToken{line: line}), nil
}
