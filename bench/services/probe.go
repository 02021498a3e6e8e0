package main

import (
	"fmt"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// probe prints, per Raft index, what the batch did to tasks (temporary).
func probe(st *state.Store, start time.Time) func() {
	ev, cancel := st.Watch()
	go func() {
		var idx uint64
		var kinds map[string]int
		flush := func() {
			if idx != 0 {
				fmt.Printf("  probe +%s idx %d %v\n", ms(time.Since(start)), idx, kinds)
			}
		}
		for e := range ev {
			if e.Index != idx {
				flush()
				idx, kinds = e.Index, map[string]int{}
			}
			t := e.Task()
			if t == nil {
				kinds[fmt.Sprintf("%T", e.Object)]++
				continue
			}
			old, _ := e.Old.(*swarmpb.Task)
			os := "-"
			if old != nil {
				os = old.GetStatus().GetState().String()[11:]
			}
			kinds[e.Kind.String()+":"+os+">"+t.GetStatus().GetState().String()[11:]]++
		}
		flush()
	}()
	return cancel
}
