package scheduler

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// referenceSchedule is the obvious O(tasks·nodes) algorithm for at most one
// spread descriptor: for every task, rank every eligible node by (spread
// group count, recently failed, service count, total count, id). Schedule
// must agree with it exactly, reasons included.
func referenceSchedule(s *Scheduler, ts []*swarmpb.Task, now time.Time) []Decision {
	out := make([]Decision, len(ts))
	type gk = groupKey
	var order []gk
	idx := map[gk][]int{}
	for i, t := range ts {
		out[i].TaskID = t.GetId()
		k := gk{t.GetServiceId(), t.GetSpecVersion()}
		if _, ok := idx[k]; !ok {
			order = append(order, k)
		}
		idx[k] = append(idx[k], i)
	}
	for _, k := range order {
		g := newTaskGroup(ts[idx[k][0]])
		live := s.liveNodes()
		initial := map[*nodeInfo]bool{}
		for _, n := range live {
			if firstFailing(g, n, 0) < 0 {
				initial[n] = true
			}
		}
		groupOf := func(n *nodeInfo) spreadValue {
			if len(g.spread) == 0 {
				return spreadValue{}
			}
			v, ok := protoAttr(n.node, g.spread[0].kind, g.spread[0].label)
			return spreadValue{v, !ok}
		}
		for _, i := range idx[k] {
			if len(live) == 0 {
				out[i].Reason = ReasonNoNodes
				continue
			}
			counts := map[spreadValue]int{}
			for n := range initial {
				counts[groupOf(n)] += n.perService[g.serviceID]
			}
			var best *nodeInfo
			var bestKey [5]int
			failed := make([]int, len(filters))
			for rank, n := range live {
				if fi := firstFailing(g, n, 0); fi >= 0 {
					failed[fi]++
					continue
				}
				f := 0
				if n.recentlyFailed(g.serviceID, now) {
					f = 1
				}
				key := [5]int{counts[groupOf(n)], f, n.perService[g.serviceID], n.total, rank}
				if best == nil || less5(key, bestKey) {
					best, bestKey = n, key
				}
			}
			if best == nil {
				out[i].Reason = explain(failed)
				continue
			}
			s.record(ts[i].GetId(), best, g.serviceID, g.cpu, g.mem, g.ports)
			out[i].NodeID = best.id
		}
	}
	return out
}

func less5(a, b [5]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func TestScheduleMatchesReference(t *testing.T) {
	placed, pending := 0, 0
	for seed := int64(1); seed <= 300; seed++ {
		r := rand.New(rand.NewSource(seed))
		var nodes []*swarmpb.Node
		nn := r.Intn(12)
		for i := 0; i < nn; i++ {
			var opts []nodeOpt
			switch z := r.Intn(4); z {
			case 0, 1, 2:
				opts = append(opts, withLabels("zone", string(rune('a'+z))))
			}
			opts = append(opts, withResources(int64(r.Intn(5))*1e9, int64(r.Intn(5))<<30))
			if r.Intn(8) == 0 {
				opts = append(opts, withAvailability(swarmpb.NodeAvailability(1+r.Intn(2))))
			}
			if r.Intn(8) == 0 {
				opts = append(opts, withStatus(swarmpb.NodeStatus_NODE_STATUS_DOWN))
			}
			if r.Intn(3) == 0 {
				opts = append(opts, withRole(swarmpb.NodeRole_NODE_ROLE_MANAGER))
			}
			nodes = append(nodes, mkNode(fmt.Sprintf("n%02d", r.Intn(100)), opts...))
		}
		services := []string{"s1", "s2", "s3"}
		randOpts := func() []taskOpt {
			var o []taskOpt
			if r.Intn(2) == 0 {
				o = append(o, withReservation(int64(r.Intn(3))*5e8, int64(r.Intn(3))<<29))
			}
			if r.Intn(3) == 0 {
				o = append(o, withMaxPerNode(uint64(1+r.Intn(3))))
			}
			if r.Intn(4) == 0 {
				o = append(o, withHostPort("tcp", uint32(8000+r.Intn(2))))
			}
			if r.Intn(2) == 0 {
				o = append(o, withSpread("node.labels.zone"))
			}
			if r.Intn(4) == 0 {
				o = append(o, withConstraints("node.role!=manager"))
			}
			return o
		}
		mk := func() (*Scheduler, []*swarmpb.Task) {
			s := newWith(nodes...)
			r2 := rand.New(rand.NewSource(seed * 7919))
			for i := 0; i < nn*2 && nn > 0; i++ {
				n := nodes[r2.Intn(len(nodes))].Id
				s.AddTask(mkTask(fmt.Sprintf("old%d", i), services[r2.Intn(3)], onNode(n)))
			}
			for i := 0; i < 3 && nn > 0; i++ {
				s.NodeFailed(nodes[r2.Intn(len(nodes))].Id, services[r2.Intn(3)], t0.Add(-time.Duration(r2.Intn(10))*time.Minute))
			}
			return s, nil
		}
		var batch []*swarmpb.Task
		for gi := 0; gi < 1+r.Intn(3); gi++ {
			svc := services[r.Intn(3)]
			ver := uint64(gi + 1)
			batch = append(batch, tasks(fmt.Sprintf("%s-v%d", svc, ver), r.Intn(25), append(randOpts(), func(t *swarmpb.Task) {
				t.ServiceId, t.SpecVersion = svc, ver
			})...)...)
		}
		s1, _ := mk()
		s2, _ := mk()
		got := s1.Schedule(batch, t0)
		want := referenceSchedule(s2, batch, t0)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("seed %d task %d: got %+v, reference %+v", seed, i, got[i], want[i])
			}
			if got[i].NodeID != "" {
				placed++
			} else {
				pending++
			}
		}
	}
	if placed < 1000 || pending < 200 {
		t.Fatalf("weak test: %d placed, %d pending", placed, pending)
	}
	t.Logf("%d placed, %d pending", placed, pending)
}
