package nft

import (
	"context"
	"strings"
	"testing"
)

func TestTableName(t *testing.T) {
	for _, c := range []struct{ id, want string }{
		{"ABCdef0123456789xyz", "p_abcdef012345"},
		{"a-b.c", "p_abc"},
		{"--", ""},
		{"", ""},
	} {
		if got := TableName("p_", c.id); got != c.want {
			t.Errorf("TableName(%q) = %q, want %q", c.id, got, c.want)
		}
	}
}

func TestExcerpt(t *testing.T) {
	if Excerpt("one line\n") != "" {
		t.Error("a single line is already in the error")
	}
	if got := Excerpt("a\nb"); got != "\na\nb" {
		t.Errorf("Excerpt = %q", got)
	}
	if got := Excerpt(strings.Repeat("x\n", 2000)); len(got) > 2010 {
		t.Errorf("Excerpt not bounded: %d bytes", len(got))
	}
}

func TestMissingBinary(t *testing.T) {
	tb := Table{Name: "raftswarm_x", Bin: "/nonexistent/nft"}
	err := tb.Probe(context.Background(), "", "nftables unusable")
	if err == nil || !strings.HasPrefix(err.Error(), "nftables unusable: /nonexistent/nft") {
		t.Fatalf("Probe with a missing nft: %v", err)
	}
}
