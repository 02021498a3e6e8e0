package api

// WatchEvents: the cluster event stream, served by any manager from its
// own replica's journal (state/events). Unlike the other Control calls it
// needs no leader: every manager applies every entry.

import (
	"context"
	"errors"
	"io"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state/events"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// EventSource is what WatchEvents needs: an events.Journal.
type EventSource interface {
	Subscribe(events.Request) (*events.Subscription, error)
}

// eventBatch bounds how many events one WatchEventsMessage carries.
const eventBatch = 256

// WatchEvents streams cluster events; see events.proto.
func (s *ControlServer) WatchEvents(req *swarmpb.WatchEventsRequest, stream swarmpb.Control_WatchEventsServer) error {
	if s.Events == nil {
		return status.Error(codes.Unimplemented, "this manager does not serve cluster events")
	}
	f, err := events.ParseFilter(req.GetFilters())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if req.GetSince() < 0 || req.GetUntil() < 0 {
		return status.Error(codes.InvalidArgument, "since and until must be positive times")
	}
	if req.Until != 0 && req.Since != 0 && req.Until < req.Since {
		return status.Error(codes.InvalidArgument, "until is before since: nothing to show")
	}
	r := events.Request{Since: req.GetSince(), Filter: f}
	if req.AfterIndex != nil {
		r.After = &events.Position{Index: req.GetAfterIndex(), Seq: req.GetAfterSeq()}
	}
	sub, err := s.Events.Subscribe(r)
	if err != nil {
		return eventStatus(err)
	}
	defer sub.Cancel()

	until := req.GetUntil()
	// send sends batch, cut at until; ended reports that until was passed.
	send := func(batch []*swarmpb.ClusterEvent) (ended bool, err error) {
		for i, ev := range batch {
			if until != 0 && ev.Time > until {
				batch, ended = batch[:i], true
				break
			}
		}
		if len(batch) > 0 {
			err = stream.Send(&swarmpb.WatchEventsMessage{Events: batch})
		}
		return ended, err
	}
	if req.GetSince() == 0 {
		p := sub.Start()
		if err := stream.Send(&swarmpb.WatchEventsMessage{Start: true, Index: p.Index, Seq: p.Seq}); err != nil {
			return err
		}
	}
	backlog := sub.Backlog()
	for len(backlog) > 0 {
		n := min(len(backlog), eventBatch)
		if ended, err := send(backlog[:n]); ended || err != nil {
			return err
		}
		backlog = backlog[n:]
	}

	var deadline <-chan time.Time
	if until != 0 {
		d := time.Until(time.Unix(0, until))
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		deadline = t.C
	}
	ctx := stream.Context()
	live := sub.Events()
	for {
		var first *swarmpb.ClusterEvent
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-deadline:
			return nil
		case first = <-live:
		case <-sub.Done():
			// Deliver what was queued before the end, then say why.
			for {
				select {
				case ev := <-live:
					if ended, err := send([]*swarmpb.ClusterEvent{ev}); ended || err != nil {
						return err
					}
					continue
				default:
				}
				return eventStatus(sub.Err())
			}
		}
		batch := []*swarmpb.ClusterEvent{first}
	drain:
		for len(batch) < eventBatch {
			select {
			case ev := <-live:
				batch = append(batch, ev)
			default:
				break drain
			}
		}
		if ended, err := send(batch); ended || err != nil {
			return err
		}
	}
}

// eventStatus gives a journal error its gRPC code: OutOfRange for a start
// the manager no longer keeps, ResourceExhausted for a client that fell
// behind, Unavailable for a manager going away (the client may resume on
// another).
func eventStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, events.ErrTooOld):
		return status.Error(codes.OutOfRange, err.Error())
	case errors.Is(err, events.ErrSlow):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, events.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	}
	return Status(err)
}

// LocalControl is an optional Router ability: the ControlServer of the
// manager running in this process, or nil. Calls that any manager answers
// from its own replica (WatchEvents) are served there instead of being
// relayed to the leader.
type LocalControl interface {
	LocalControl() swarmpb.ControlServer
}

// WatchEvents serves the stream from this node's manager when it runs one,
// else from wherever the router sends Control calls. It does not retry:
// the client resumes from the last position it received.
func (p *ControlProxy) WatchEvents(req *swarmpb.WatchEventsRequest, stream swarmpb.Control_WatchEventsServer) error {
	if lc, ok := p.Router.(LocalControl); ok {
		if srv := lc.LocalControl(); srv != nil {
			return srv.WatchEvents(req, stream)
		}
	}
	ctx := stream.Context()
	srv, conn, err := p.Router.RouteControl(ctx)
	if err != nil {
		return Status(err)
	}
	if srv != nil {
		return srv.WatchEvents(req, stream)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the remote call if our client went away
	in, err := swarmpb.NewControlClient(conn).WatchEvents(ctx, req)
	if err != nil {
		return err
	}
	for {
		msg, err := in.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
}
