package api

import (
	"encoding/base64"
	"unicode/utf8"
)

// Paging of Control's lists (ListNodes, ListServices, ListTasks). Items
// come in ID order, so a page resumes after the last ID of the previous
// one whatever was created or removed in between; the token is that ID,
// base64-encoded so that clients treat it as opaque. A page holds at most
// the requested number of items and, whatever that number, stops before
// its items pass pageBytes: objects may be large (up to the object size
// limit, or larger if stored before it existed), and a response must stay
// far below gRPC's 4 MiB message limit.
const (
	DefaultPageSize = 1000
	MaxPageSize     = 10_000
	pageBytes       = 1 << 20
)

// pageArgs checks a request's page size and token and returns how many
// items to return and the ID to start after.
func pageArgs(size int32, token string) (int, string, error) {
	if size < 0 {
		return 0, "", invalidf("invalid page size %d: it must be 0 (the default, %d) or more", size, DefaultPageSize)
	}
	n := int(size)
	if n == 0 {
		n = DefaultPageSize
	}
	n = min(n, MaxPageSize)
	if token == "" {
		return n, "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) == 0 || len(raw) > 256 || !utf8.Valid(raw) {
		return 0, "", invalidf("invalid page token %q: pass the next_page_token of the previous page, or none for the first page", truncate(token, 40))
	}
	return n, string(raw), nil
}

func pageToken(lastID string) string { return base64.RawURLEncoding.EncodeToString([]byte(lastID)) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// pager decides what goes in one page.
type pager struct {
	limit, n, bytes int
}

// fits reports whether an item of size bytes still goes in the page, and
// counts it if so. The first item always goes, so every page progresses.
func (p *pager) fits(size int) bool {
	size += 8 // the field's tag and length
	if p.n >= p.limit || (p.n > 0 && p.bytes+size > pageBytes) {
		return false
	}
	p.n++
	p.bytes += size
	return true
}

// next returns the token of the page after this one: empty when the page
// took every item read (the store is asked for limit+1 to know).
func (p *pager) next(read int, lastID string) string {
	if p.n >= read {
		return ""
	}
	return pageToken(lastID)
}
