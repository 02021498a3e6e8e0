package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// opTimeout bounds every client call: longer than the 5 s past which a
// call counts as slow (issue 9 #10's relay stalls, now fixed), so that a
// stall shows as a slow call, not an ambiguous one.
const opTimeout = 10 * time.Second

// register is one key of the workload: a label of a node, or the label
// "v" of a service's spec.
type register struct {
	key     string
	nodeID  string // node label
	label   string
	service int // index into Cluster.Services, for a service label
}

// Workload drives the Control API of every manager from several clients
// at once and records every call.
type Workload struct {
	c     *Cluster
	regs  []register
	hist  *History
	calls atomic.Int64
}

// NewWorkload uses two labels of every node and the label of every
// service as registers.
func NewWorkload(c *Cluster, hist *History) *Workload {
	w := &Workload{c: c, hist: hist}
	for _, d := range c.Daemons {
		for j := 0; j < 2; j++ {
			label := fmt.Sprintf("k%d", j)
			w.regs = append(w.regs, register{key: "n/" + d.Host.Name + "/" + label, nodeID: c.NodeIDs[d.Host.Name], label: label, service: -1})
		}
	}
	for i, s := range c.Services {
		w.regs = append(w.regs, register{key: "s/" + s.Name, service: i})
	}
	return w
}

// Run starts clients that each make one call every period through a
// random manager until ctx ends, and waits for their last calls.
func (w *Workload) Run(ctx context.Context, clients int, period time.Duration, seed uint64) {
	var wg sync.WaitGroup
	for id := 0; id < clients; id++ {
		rng := rand.New(rand.NewPCG(seed, uint64(id)))
		wg.Go(func() {
			tick := time.NewTicker(period)
			defer tick.Stop()
			n := 0
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				ms := w.c.Managers()
				d := ms[rng.IntN(len(ms))]
				reg := w.regs[rng.IntN(len(w.regs))]
				if rng.IntN(2) == 0 {
					n++
					w.write(id, d, reg, fmt.Sprintf("c%d-%d", id, n))
				} else {
					w.read(id, d, reg)
				}
			}
		})
	}
	wg.Wait()
}

// Calls is how many calls the clients made.
func (w *Workload) Calls() int64 { return w.calls.Load() }

func (w *Workload) write(client int, d *Daemon, reg register, value string) Op {
	w.calls.Add(1)
	op := Op{Client: client, Via: d.Host.Name, Key: reg.key, Write: true, Value: value, Start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var err error
	if reg.service < 0 {
		_, err = d.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: reg.nodeID, LabelAdd: map[string]string{reg.label: value}})
	} else {
		spec := serviceSpec(reg.service, w.c.replicas.get(reg.service))
		spec.Labels = map[string]string{"v": value}
		_, err = d.Control().UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: spec.Name, Spec: spec})
	}
	op.End = time.Now()
	op.Outcome = Classify(err)
	if err != nil {
		op.Err = err.Error()
	}
	w.hist.Add(op)
	return op
}

func (w *Workload) read(client int, d *Daemon, reg register) Op {
	w.calls.Add(1)
	op := Op{Client: client, Via: d.Host.Name, Key: reg.key, Start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var err error
	if reg.service < 0 {
		var resp *swarmpb.GetNodeResponse
		if resp, err = d.Control().GetNode(ctx, &swarmpb.GetNodeRequest{Node: reg.nodeID}); err == nil {
			op.Value = resp.GetNode().GetNode().GetSpec().GetLabels()[reg.label]
		}
	} else {
		var resp *swarmpb.GetServiceResponse
		if resp, err = d.Control().GetService(ctx, &swarmpb.GetServiceRequest{Service: w.c.Services[reg.service].Name}); err == nil {
			op.Value = resp.GetService().GetSpec().GetLabels()["v"]
		}
	}
	op.End = time.Now()
	op.Outcome = Classify(err)
	if err != nil {
		op.Err = err.Error()
		if op.Outcome == OK {
			op.Outcome = Ambiguous
		}
	}
	w.hist.Add(op)
	return op
}

// FinalReads reads every register through the leader once the cluster is
// healed; the reads join the history.
func (w *Workload) FinalReads(ctx context.Context) (map[string]string, error) {
	final := map[string]string{}
	for _, reg := range w.regs {
		err := poll(ctx, 30*time.Second, func() error {
			l, err := w.c.Leader(ctx)
			if err != nil {
				return err
			}
			op := w.read(-1, l, reg)
			if op.Outcome != OK {
				return fmt.Errorf("final read: %s", op)
			}
			final[reg.key] = op.Value
			return nil
		})
		if err != nil {
			return final, err
		}
	}
	return final, nil
}
