package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftswarm/raftswarm/internal/listing"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// With -daemons the create and the scale to 0 are timed from the
// service's counts (ListServices: running, live, running_any, total),
// polled every -poll, not from listings of its tasks. At 100,000 tasks a
// listing took the leader 10 pages and 8-11 % of its CPU over a create,
// and 20-40 s on a loaded machine: a time read from it was late by that
// much. The counts are read in one pass under the store's lock with
// nothing encoded per task, so a time is late by at most one poll plus one
// short call. The tasks are still listed, after the timed phase, for the
// checks.

// errNoCounts: the leader does not fill ServiceInfo.live and .total.
var errNoCounts = errors.New("the managers do not count live and total tasks (a managerd older than ServiceInfo.live); use a newer -bin")

// serviceCounts reads the counts of the service named name from the
// leader (zero counts if it has no such service).
func (p *procs) serviceCounts(ctx context.Context, name string) (*swarmpb.ServiceInfo, error) {
	ctl, err := p.control(ctx)
	if err != nil {
		return nil, err
	}
	infos, err := listing.Services(ctx, ctl)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	for _, si := range infos {
		if si.GetService().GetSpec().GetName() != name {
			continue
		}
		if si.GetRunning() > si.GetLive() || si.GetLive() > si.GetTotal() {
			return nil, fmt.Errorf("service %s: running %d, live %d, total %d: %w", name, si.GetRunning(), si.GetLive(), si.GetTotal(), errNoCounts)
		}
		return si, nil
	}
	return &swarmpb.ServiceInfo{}, nil
}

// awaitCounts polls the service's counts until cond holds and returns when
// the poll that saw it returned; with -trace it prints them.
func (p *procs) awaitCounts(ctx context.Context, name, what string, cond func(*swarmpb.ServiceInfo) bool) (time.Time, error) {
	start, traced := time.Now(), time.Time{}
	last := &swarmpb.ServiceInfo{}
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		si, err := p.serviceCounts(cctx, name)
		cancel()
		now := time.Now()
		if errors.Is(err, errNoCounts) {
			return time.Time{}, err
		}
		if err == nil {
			if cond(si) {
				return now, nil
			}
			last = si
		}
		if traceEvery > 0 && now.Sub(traced) >= traceEvery {
			traced = now
			fmt.Printf("  %s +%.1fs %s\n", what, now.Sub(start).Seconds(), briefCounts(last))
		}
		if !retry.Sleep(ctx, p.poll) {
			return time.Time{}, fmt.Errorf("%s: %w", briefCounts(last), ctx.Err())
		}
	}
}

func briefCounts(si *swarmpb.ServiceInfo) string {
	return fmt.Sprintf("total %d live %d running %d live+running %d current %d", si.GetTotal(), si.GetLive(), si.GetRunningAny(), si.GetRunning(), si.GetRunningCurrent())
}

// scaleDownCounted is scaleDown timed from the counts: none live, none
// RUNNING.
func (b *bench) scaleDownCounted(ctx context.Context, ctl swarmpb.ControlClient, p *procs, name, id string) (time.Duration, error) {
	meter := b.phaseMeter("scale->0")
	defer meter()
	start, err := updateSpec(ctx, ctl, id, func(spec *swarmpb.ServiceSpec) { spec.Replicas = 0 })
	if err != nil {
		return 0, fmt.Errorf("scale to 0: %w", err)
	}
	at, err := p.awaitCounts(ctx, name, "scale->0", func(si *swarmpb.ServiceInfo) bool { return si.Live == 0 && si.RunningAny == 0 })
	if err != nil {
		return 0, fmt.Errorf("waiting for scale to 0: %w", err)
	}
	return at.Sub(start), nil
}
