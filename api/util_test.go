package api

import (
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A node reference that could mean two nodes is refused with both listed;
// in particular a worker that names itself like the start of another
// node's ID is not the node that reference resolves to.
func TestFindNodeRefusesAmbiguousReferences(t *testing.T) {
	st := state.New()
	r := &storeRaft{store: st}
	node := func(id, host string) *swarmpb.StoreAction {
		return state.Create(&swarmpb.Node{Id: id, Spec: &swarmpb.NodeSpec{}, Description: &swarmpb.NodeDescription{Hostname: host}})
	}
	dtApply(t, r,
		node("cimle6v7abcdefghij0123456", "m1"),
		node("zzzz00000000000000000000a", "cimle6v7"), // a worker naming itself after m1's ID prefix
		node("qqqq11111111111111111111b", "twin"),
		node("qqqq22222222222222222222c", "twin"),
		node("solo33333333333333333333d", "solo"),
		node("selfprefix444444444444444", "selfpre"), // hostname is a prefix of its own ID
	)
	find := func(ref string) (*swarmpb.Node, error) {
		var n *swarmpb.Node
		var err error
		st.View(func(tx state.ReadTx) { n, err = findNode(tx, ref) })
		return n, Status(err)
	}
	for ref, want := range map[string]string{
		"cimle6v7abcdefghij0123456": "cimle6v7abcdefghij0123456", // exact ID always wins
		"zzzz00000000000000000000a": "zzzz00000000000000000000a",
		"solo":                      "solo33333333333333333333d", // hostname, also the ID's prefix: one node
		"solo3":                     "solo33333333333333333333d", // unique prefix
		"selfpre":                   "selfprefix444444444444444",
		"qqqq1":                     "qqqq11111111111111111111b",
	} {
		n, err := find(ref)
		if err != nil || n.Id != want {
			t.Errorf("findNode(%q) = %v, %v; want %s", ref, n.GetId(), err, want)
		}
	}
	for ref, candidates := range map[string][]string{
		"cimle6v7": {"cimle6v7abcdefghij0123456", "zzzz00000000000000000000a", `"m1"`, `"cimle6v7"`},
		"cimle":    nil, // only m1's prefix: resolves
		"twin":     {"qqqq11111111111111111111b", "qqqq22222222222222222222c"},
		"qqqq":     {"qqqq11111111111111111111b", "qqqq22222222222222222222c"},
	} {
		n, err := find(ref)
		if candidates == nil {
			if err != nil {
				t.Errorf("findNode(%q): %v", ref, err)
			}
			continue
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("findNode(%q) = %v, %v; want InvalidArgument (ambiguous)", ref, n.GetId(), err)
			continue
		}
		msg := status.Convert(err).Message()
		if !strings.Contains(msg, "ambiguous") || strings.Contains(msg, "\n") {
			t.Errorf("findNode(%q): message %q", ref, msg)
		}
		for _, c := range candidates {
			if !strings.Contains(msg, c) {
				t.Errorf("findNode(%q): message %q does not list %s", ref, msg, c)
			}
		}
	}
	if _, err := find("nope"); status.Code(err) != codes.NotFound {
		t.Errorf("findNode(nope): %v", err)
	}
}
