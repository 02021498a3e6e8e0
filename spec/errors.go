package spec

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrInvalidSpec is matched (errors.Is) by every *FieldError, so the API can
// map a refused spec to gRPC InvalidArgument whatever the rule was.
var ErrInvalidSpec = errors.New("invalid spec")

// FieldError is one broken rule. Its message is one line that names the
// field (as a user knows it) and the limit, e.g.
// `restart delay -5s is negative: use 0s to 168h0m0s`. It never embeds more
// than a short, escaped excerpt of the offending value, so a 3 MB label
// cannot make a 3 MB error.
type FieldError struct {
	Field string // e.g. "replicas", "label \"team\"", "container.env[3]"
	Msg   string // the whole line shown to the user
}

func (e *FieldError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrInvalidSpec) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidSpec }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: field + " " + fmt.Sprintf(format, args...)}
}

// excerptLen is how much of an offending value an error quotes.
const excerptLen = 40

// quote returns s quoted and escaped (control characters included),
// shortened to excerptLen bytes with a note of its full length.
func quote(s string) string {
	if len(s) <= excerptLen {
		return strconv.Quote(s)
	}
	cut := excerptLen
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
