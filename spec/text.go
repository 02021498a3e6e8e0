package spec

import (
	"unicode"
	"unicode/utf8"
)

// textRule says which characters a string field may hold.
type textRule uint8

const (
	// anyText: valid UTF-8 without NUL (env values, args: what exec accepts).
	anyText textRule = iota
	// lineText: valid UTF-8 without control characters (label values,
	// constraint values): one printable line.
	lineText
	// wordText: lineText without whitespace (keys, images, users).
	wordText
)

// badChar returns a description of the first character of s the rule
// forbids, or "".
func badChar(s string, r textRule) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, c := range s {
		switch {
		case c == 0:
			return "contains a NUL character"
		case r >= lineText && unicode.IsControl(c):
			return "contains a control character"
		case r >= wordText && unicode.IsSpace(c):
			return "contains whitespace"
		}
	}
	return ""
}

// checkText checks one string field: its length (in bytes) and its
// characters; an empty string is refused only when required.
func checkText(field, s string, required bool, max int, r textRule) error {
	if s == "" {
		if required {
			return fieldErr(field, "is required")
		}
		return nil
	}
	if len(s) > max {
		return fieldErr(field, "is %d bytes long: at most %d allowed", len(s), max)
	}
	if why := badChar(s, r); why != "" {
		return fieldErr(field, "%s %s", quote(s), why)
	}
	return nil
}
