package main

import (
	"fmt"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// probe prints, per Raft index of the leader's store, what the batch did:
// task state transitions and node status changes, with the time since the
// timed phase started (-probe; a diagnostic, it costs little).
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
			if n := e.Node(); n != nil {
				o, _ := e.Old.(*swarmpb.Node)
				k := "node:new"
				if o != nil {
					k = fmt.Sprintf("node:%s>%s desc-same=%v", o.Status, n.Status, proto.Equal(o.Description, n.Description))
				}
				kinds[k]++
				continue
			}
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
