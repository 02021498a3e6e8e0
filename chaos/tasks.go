package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// The bed's services are replicated, with one published port each (so the
// routing table has content), and run in the daemons' fake engine
// (--engine fake): tasks are placed, started and reported like real ones,
// without containers.
const (
	firstPublishedPort = 18080
	maxReplicas        = 4
)

// serviceSpec is the bed's i-th service with the given replicas.
func serviceSpec(i int, replicas uint64) *swarmpb.ServiceSpec {
	return &swarmpb.ServiceSpec{
		Name:      fmt.Sprintf("chaos-s%d", i),
		Container: &swarmpb.ContainerSpec{Image: "raftswarm/chaos-none:v1"},
		Replicas:  replicas,
		Ports:     []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: uint32(firstPublishedPort + i), PublishMode: "ingress"}},
	}
}

// replicaState is the replicas the bed last set on each service; label
// writes carry it, so that they do not undo a scale (a stale one may: the
// checks compare with the spec the cluster stores, not with this).
type replicaState struct {
	mu sync.Mutex
	n  []uint64
}

func (r *replicaState) get(i int) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[i]
}

func (r *replicaState) set(i int, n uint64) {
	r.mu.Lock()
	r.n[i] = n
	r.mu.Unlock()
}

// Scaler changes the replicas of a random service every period through a
// random manager, by read-modify-write with the service's version (so a
// label the workload wrote is never overwritten by a scale).
type Scaler struct {
	c      *Cluster
	scales atomic.Int64 // acknowledged
}

// Run scales until ctx ends.
func (s *Scaler) Run(ctx context.Context, period time.Duration, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 77))
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ms := s.c.Managers()
		d := ms[rng.IntN(len(ms))]
		i := rng.IntN(len(s.c.Services))
		n := uint64(1 + rng.IntN(maxReplicas))
		if s.scale(ctx, d, i, n) == nil {
			s.scales.Add(1)
		}
	}
}

func (s *Scaler) scale(ctx context.Context, d *Daemon, i int, n uint64) error {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	name := s.c.Services[i].Name
	resp, err := d.Control().GetService(cctx, &swarmpb.GetServiceRequest{Service: name})
	if err != nil {
		return err
	}
	spec := resp.GetService().GetSpec()
	spec.Replicas = n
	_, err = d.Control().UpdateService(cctx, &swarmpb.UpdateServiceRequest{Service: name, Version: resp.GetService().GetMeta().GetVersion(), Spec: spec})
	if err == nil {
		s.c.replicas.set(i, n)
	}
	return err
}

// Scales is how many scale calls were acknowledged.
func (s *Scaler) Scales() int64 { return s.scales.Load() }

// TaskState checks the cluster's tasks and routing tables against the
// leader's state once, and returns what is wrong (nil: converged):
//   - per service, running tasks (desired and actual state running) ==
//     the spec's replicas, and no task is meant to run beyond them;
//   - no two tasks meant to run share a slot;
//   - no task meant to run is on a node the cluster does not list, and no
//     task meant to run belongs to a service that is gone;
//   - every node's engine runs exactly the tasks the leader has running
//     on it (no duplicate left behind by a partition, no orphan);
//   - every node's routing table (the Endpoints stream's published ports,
//     as its agent applied them) has exactly the leader's running tasks as
//     backends of each service's port.
func (c *Cluster) TaskState(ctx context.Context) []string {
	leader, err := c.Leader(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ctl := leader.Control()
	svcs, err := listing.Services(cctx, ctl)
	if err != nil {
		return []string{"service ls: " + err.Error()}
	}
	tasks, _, err := listing.Tasks(cctx, ctl, &swarmpb.ListTasksRequest{})
	if err != nil {
		return []string{"task ls: " + err.Error()}
	}
	nodes, err := listing.Nodes(cctx, ctl)
	if err != nil {
		return []string{"node ls: " + err.Error()}
	}
	var bad []string
	nodeByID := map[string]string{}
	for _, n := range nodes {
		nodeByID[n.Node.Id] = n.Node.Description.GetHostname()
	}
	type svcState struct {
		spec    *swarmpb.ServiceSpec
		running []string // task IDs, desired and actual running
		meant   int      // desired running
		slots   map[uint64]string
	}
	byID := map[string]*svcState{}
	for _, s := range svcs {
		byID[s.Service.Id] = &svcState{spec: s.Service.Spec, slots: map[uint64]string{}}
	}
	runningOn := map[string][]string{} // node ID -> task IDs the leader has running there
	for _, t := range tasks {
		if t.DesiredState != swarmpb.TaskState_TASK_STATE_RUNNING {
			continue
		}
		s := byID[t.ServiceId]
		if s == nil {
			bad = append(bad, fmt.Sprintf("task %s is meant to run but its service %s is gone", t.Id, t.ServiceId))
			continue
		}
		s.meant++
		if other, dup := s.slots[t.Slot]; dup {
			bad = append(bad, fmt.Sprintf("service %s: tasks %s and %s are both meant to run in slot %d", s.spec.Name, other, t.Id, t.Slot))
		}
		s.slots[t.Slot] = t.Id
		if t.NodeId != "" && nodeByID[t.NodeId] == "" {
			bad = append(bad, fmt.Sprintf("service %s: task %s is meant to run on node %s, which is gone", s.spec.Name, t.Id, t.NodeId))
		}
		if t.GetStatus().GetState() == swarmpb.TaskState_TASK_STATE_RUNNING {
			s.running = append(s.running, t.Id)
			runningOn[t.NodeId] = append(runningOn[t.NodeId], t.Id)
		}
	}
	want := map[string][]string{} // "service/port" -> running task IDs
	for id, s := range byID {
		if uint64(len(s.running)) != s.spec.Replicas || uint64(s.meant) != s.spec.Replicas {
			bad = append(bad, fmt.Sprintf("service %s: %d tasks running and %d meant to, want %d", s.spec.Name, len(s.running), s.meant, s.spec.Replicas))
		}
		for _, p := range s.spec.Ports {
			ids := slices.Clone(s.running)
			sort.Strings(ids)
			want[fmt.Sprintf("%s/%d", id, p.PublishedPort)] = ids
		}
	}
	for _, d := range c.Daemons {
		if !d.Running() || d.Paused() {
			bad = append(bad, d.Host.Name+" is not running")
			continue
		}
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := d.Local().Info(ictx, &swarmpb.InfoRequest{EngineTasks: true})
		cancel()
		if err != nil {
			bad = append(bad, fmt.Sprintf("info on %s: %v", d.Host.Name, err))
			continue
		}
		if info.EngineTasksError != "" {
			bad = append(bad, fmt.Sprintf("%s's engine: %s", d.Host.Name, info.EngineTasksError))
		}
		engine := slices.Clone(info.EngineRunningTasks)
		leaderView := slices.Clone(runningOn[info.NodeId])
		sort.Strings(engine)
		sort.Strings(leaderView)
		if !slices.Equal(engine, leaderView) {
			bad = append(bad, fmt.Sprintf("%s's engine runs tasks %v, the leader has %v running there", d.Host.Name, engine, leaderView))
		}
		got := map[string][]string{}
		for _, se := range info.RoutingTable {
			var ids []string
			for _, b := range se.Backends {
				ids = append(ids, b.TaskId)
			}
			sort.Strings(ids)
			got[fmt.Sprintf("%s/%d", se.ServiceId, se.PublishedPort)] = ids
		}
		if !mapsEqual(got, want) {
			bad = append(bad, fmt.Sprintf("%s's routing table %v differs from the leader's running tasks %v", d.Host.Name, got, want))
		}
	}
	return bad
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

// WaitTasksConverged polls TaskState until it finds nothing wrong.
func (c *Cluster) WaitTasksConverged(ctx context.Context, timeout time.Duration) error {
	var last []string
	err := poll(ctx, timeout, func() error {
		last = c.TaskState(ctx)
		if len(last) == 0 {
			return nil
		}
		return fmt.Errorf("%s", strings.Join(last, "; "))
	})
	if err != nil {
		return fmt.Errorf("tasks did not converge to their specs: %w", err)
	}
	return nil
}

// watchNotReady asks the leader for the node list every 300 ms until ctx
// ends and returns every node it saw not Ready, or a manager not
// reachable, once each ("m2 NODE_STATUS_DOWN").
func (c *Cluster) watchNotReady(ctx context.Context) []string {
	seen := map[string]bool{}
	var out []string
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		if l, err := c.Leader(ctx); err == nil {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			resp, err := l.Control().ListNodes(cctx, &swarmpb.ListNodesRequest{})
			cancel()
			if err == nil {
				for _, n := range resp.Nodes {
					what := ""
					switch {
					case n.Node.Status != swarmpb.NodeStatus_NODE_STATUS_READY:
						what = n.Node.Status.String()
					case n.Node.Role == swarmpb.NodeRole_NODE_ROLE_MANAGER && n.ManagerStatus != "Leader" && n.ManagerStatus != "Reachable":
						what = "manager " + n.ManagerStatus
					}
					if key := n.Node.Description.GetHostname() + " " + what; what != "" && !seen[key] {
						seen[key] = true
						out = append(out, key+" (seen by leader "+l.Host.Name+")")
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
	}
}
