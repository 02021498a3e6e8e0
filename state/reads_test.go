package state

import (
	"fmt"
	"slices"
	"testing"
)

func TestPagedReads(t *testing.T) {
	s := New()
	var all []string
	b := create(svc("s1", "one"), svc("s2", "two"))
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("t%03d", (i*37)%50) // not in ID order
		sid, node := "s1", "n1"
		if i%2 == 1 {
			sid, node = "s2", ""
		}
		b = join(b, create(task(id, sid, node)))
		all = append(all, id)
	}
	mustApply(t, s, b)
	slices.Sort(all)

	pages := func(q TaskQuery, limit int) []string {
		var out []string
		after := ""
		for {
			var page []string
			s.View(func(tx ReadTx) { page = ids(tx.TasksPage(q, after, limit)) })
			if len(page) == 0 {
				return out
			}
			if !slices.IsSorted(page) || len(page) > limit {
				t.Fatalf("page %v: unsorted or over %d", page, limit)
			}
			out = append(out, page...)
			after = page[len(page)-1]
		}
	}
	if got := pages(TaskQuery{}, 7); !slices.Equal(got, all) {
		t.Fatalf("all tasks in pages of 7:\n got %v\nwant %v", got, all)
	}
	var s2, unassigned []string
	s.View(func(tx ReadTx) {
		s2 = ids(tx.TasksByService("s2"))
		unassigned = ids(tx.TasksByNode(""))
	})
	if got := pages(TaskQuery{ServiceIDs: []string{"s2", "s2"}}, 4); !slices.Equal(got, s2) {
		t.Fatalf("s2 tasks: got %v want %v", got, s2)
	}
	if got := pages(TaskQuery{ByNode: true}, 100); !slices.Equal(got, unassigned) {
		t.Fatalf("unassigned: got %v want %v", got, unassigned)
	}
	if got := pages(TaskQuery{ServiceIDs: []string{"s1"}, ByNode: true}, 3); len(got) != 0 {
		t.Fatalf("s1 tasks unassigned: %v", got)
	}
	s.View(func(tx ReadTx) {
		if got := ids(tx.ServicesPage("s1", 10)); !slices.Equal(got, []string{"s2"}) {
			t.Fatalf("services after s1: %v", got)
		}
		if got := tx.NodesPage("", 0); got != nil {
			t.Fatalf("limit 0: %v", got)
		}
		if got := len(tx.TasksByServiceUnordered("s1")); got != 25 {
			t.Fatalf("unordered s1 tasks: %d", got)
		}
	})
}
