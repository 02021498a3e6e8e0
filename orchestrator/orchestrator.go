package orchestrator

import (
	"context"
	"log/slog"
	"time"

	"github.com/raftswarm/raftswarm/api"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// Raft is where the loops write.
type Raft interface {
	Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error)
}

// maxBatch bounds the actions of one Raft entry so a 10,000-task service
// does not become one multi-megabyte entry.
const maxBatch = 2000

// Orchestrator reconciles services into tasks for one leadership term.
type Orchestrator struct {
	store *state.Store
	raft  Raft
	log   *slog.Logger
	now   func() time.Time

	// stableAt records, per service, when its last rolling-update batch
	// finished; the update delay counts from there. It is term-local: a
	// new leader restarts the delay, which only ever slows an update.
	stableAt map[string]time.Time
	// batched records services for which this term started an update
	// batch, so the delay separates batches but never delays the first.
	batched map[string]bool
}

// RunOrchestrator runs the orchestrator until ctx ends.
func RunOrchestrator(ctx context.Context, st *state.Store, r Raft, log *slog.Logger) error {
	o := &Orchestrator{store: st, raft: r, log: log, now: time.Now, stableAt: map[string]time.Time{}, batched: map[string]bool{}}
	return o.run(ctx)
}

func (o *Orchestrator) run(ctx context.Context) error {
	events, cancel := o.store.Watch()
	defer func() { cancel() }()
	wake := o.reconcile(ctx, nil)
	timer := time.NewTimer(time.Until(wake))
	defer timer.Stop()
	for {
		var dirty map[string]bool // service IDs; nil means all
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case ev, ok := <-events:
			if !ok {
				cancel()
				events, cancel = o.store.Watch()
				break
			}
			dirty = map[string]bool{}
			markDirty(dirty, ev)
			// Take whatever else is queued, so a burst of events costs one
			// reconciliation.
		drain:
			for i := 0; i < 10000 && dirty != nil; i++ {
				select {
				case ev, ok := <-events:
					if !ok {
						break drain
					}
					markDirty(dirty, ev)
					if dirty["*"] {
						dirty = nil
					}
				default:
					break drain
				}
			}
			if dirty != nil && dirty["*"] {
				dirty = nil
			}
		}
		wake = o.reconcile(ctx, dirty)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(wake))
	}
}

// markDirty records which services an event concerns; "*" means all
// (a node changed, or the cluster settings did).
func markDirty(d map[string]bool, ev state.Event) {
	switch {
	case ev.Service() != nil:
		d[ev.Service().Id] = true
	case ev.Task() != nil:
		d[ev.Task().ServiceId] = true
	case ev.Node() != nil:
		old, _ := ev.Old.(*swarmpb.Node)
		n := ev.Node()
		if old == nil || old.Status != n.Status || old.GetSpec().GetAvailability() != n.GetSpec().GetAvailability() ||
			!mapsEqual(old.GetSpec().GetLabels(), n.GetSpec().GetLabels()) || old.Role != n.Role || ev.Kind == state.EventDelete {
			d["*"] = true
		}
	case ev.Cluster() != nil:
		d["*"] = true
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// reconcile brings the given services (all when nil) to their desired
// state and returns when it next needs to run without an event.
func (o *Orchestrator) reconcile(ctx context.Context, dirty map[string]bool) time.Time {
	now := o.now()
	wake := now.Add(time.Minute)
	var changes, creates []*swarmpb.StoreAction
	o.store.View(func(tx state.ReadTx) {
		p := newPlan(tx, now)
		if dirty == nil {
			for _, svc := range tx.ListServices() {
				o.reconcileService(p, svc)
			}
			p.reapOrphans(tx.ListTasks())
		} else {
			for id := range dirty {
				if svc := tx.GetService(id); svc != nil {
					o.reconcileService(p, svc)
				} else {
					p.reapOrphans(tx.TasksByService(id))
				}
			}
		}
		changes, creates = p.actions()
		if p.wake.Before(wake) {
			wake = p.wake
		}
	})
	if !o.write(ctx, changes) || !o.write(ctx, creates) {
		// Usually a conflict with an agent's status write: the event it
		// caused brings us back, and so does this timer.
		return now.Add(100 * time.Millisecond)
	}
	return wake
}

func (o *Orchestrator) write(ctx context.Context, acts []*swarmpb.StoreAction) bool {
	for len(acts) > 0 {
		n := min(len(acts), maxBatch)
		if _, err := o.raft.Apply(ctx, api.Batch(acts[:n]...)); err != nil {
			if ctx.Err() == nil {
				o.log.Debug("orchestrator write failed; reconciling again", "err", err)
			}
			return false
		}
		acts = acts[n:]
	}
	return true
}

func (o *Orchestrator) reconcileService(p *plan, svc *swarmpb.Service) {
	if svc.Spec.Mode == swarmpb.ServiceMode_SERVICE_MODE_GLOBAL {
		o.reconcileGlobal(p, svc)
	} else {
		o.reconcileReplicated(p, svc)
	}
}
