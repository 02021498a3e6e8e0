package raft

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Prober asks the manager at addr which leader it last heard from over
// Raft (its leader's address, "" when none). The leader uses it to see that
// a new manager answers before making it a voter.
type Prober interface {
	RaftLeader(ctx context.Context, addr string) (string, error)
}

// AddVoter adds a manager (or re-adds it at a new address) as a voter,
// once it has answered over Raft. Leader only.
//
// A voter counts toward quorum from the moment the configuration naming
// it is appended, so adding one that cannot be reached raises the
// majority without adding a vote: a 1-manager cluster that adds an
// unreachable second voter can no longer commit anything, not even the
// removal of that voter. So the manager is first added as a non-voter,
// which receives the log but does not count; once it reports that it has
// heard from this leader over Raft (Config.Prober), it is made a voter. If
// it does not within Timings.JoinWait, the non-voter is removed again and
// the error says which address did not answer.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	members, err := n.Members()
	if err != nil {
		return err
	}
	nonvoter := false
	for _, m := range members {
		switch {
		case m.ID == id && m.Addr == addr:
			if m.Voter {
				return nil
			}
			nonvoter = true // an earlier attempt; wait for it again
		case m.Addr == addr && m.ID == n.cfg.NodeID:
			return fmt.Errorf("add manager %s: %s is this leader's own address; the new manager must advertise an address of its own", id, addr)
		case m.ID == id || m.Addr == addr:
			// The same manager at an old address, or a departed one whose
			// address is reused.
			if err := n.RemoveServer(ctx, m.ID); err != nil {
				return err
			}
		}
	}
	t := n.cfg.timings()
	if !nonvoter {
		if err := n.raft.AddNonvoter(hraft.ServerID(id), hraft.ServerAddress(addr), 0, t.LeaderWait).Error(); err != nil {
			return n.membershipErr(ctx, "add non-voter", err)
		}
	}
	if err := n.awaitAnswer(ctx, id, addr, t.JoinWait); err != nil {
		if errors.Is(err, ErrNotLeader) {
			return err // the new leader takes it from here
		}
		// Undo: a non-voter costs no quorum, but a manager that never
		// answers must not linger in the configuration.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.LeaderWait)
		defer cancel()
		if rerr := n.RemoveServer(rctx, id); rerr != nil {
			n.cfg.Logger.Warn("removing the unresponsive manager from raft failed; it stays a non-voter (no vote, no part in quorum) until it joins or is demoted", "node", id, "err", rerr)
		}
		return err
	}
	if err := n.raft.AddVoter(hraft.ServerID(id), hraft.ServerAddress(addr), 0, t.LeaderWait).Error(); err != nil {
		return n.membershipErr(ctx, "add voter", err)
	}
	return nil
}

// awaitAnswer waits, at most wait, until the manager at addr says that it
// heard from this leader: the leader's Raft connection to it works.
func (n *Node) awaitAnswer(ctx context.Context, id, addr string, wait time.Duration) error {
	if n.cfg.Prober == nil {
		return nil
	}
	deadline := time.Now().Add(wait)
	pause := 50 * time.Millisecond
	var last error
	for {
		// Each probe is bounded on its own, so that an address that
		// black-holes does not use up the whole wait in one attempt.
		pctx, cancel := context.WithTimeout(ctx, min(time.Second, time.Until(deadline)))
		leader, err := n.cfg.Prober.RaftLeader(pctx, addr)
		cancel()
		switch {
		case n.raft.State() != hraft.Leader:
			// Leadership moved during the wait: the caller retries with
			// the new leader, which finds the non-voter and waits again.
			return ErrNotLeader
		case err == nil && (leader == n.cfg.Addr || leader == string(n.trans.LocalAddr())):
			// (Followers name the leader by its transport's address, the
			// advertise address resolved.)
			return nil
		case err == nil && leader == "":
			last = errors.New("it answers gRPC but has not heard from the leader over Raft")
		case err == nil:
			last = fmt.Errorf("it follows another leader (%s)", leader)
		case last == nil || !strings.Contains(err.Error(), context.DeadlineExceeded.Error()):
			// A timed-out probe says less than a refused connection.
			last = err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("add manager %s at %s: %w", id, addr, ctx.Err())
		}
		if time.Until(deadline) <= 0 {
			return &UnresponsiveError{ID: id, Addr: addr, Wait: wait, Last: last}
		}
		timer := time.NewTimer(min(pause, time.Until(deadline)))
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("add manager %s at %s: %w", id, addr, ctx.Err())
		case <-timer.C:
		}
		pause = min(pause*2, 500*time.Millisecond)
	}
}
