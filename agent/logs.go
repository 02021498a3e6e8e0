package agent

import (
	"context"
	"sync"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Log publishing bounds: one PublishLogs message carries at most this many
// lines or bytes, whichever comes first (gRPC refuses messages over 4 MiB).
const (
	logBatchLines = 128
	logBatchBytes = 1 << 20
)

// sessionLogs runs the log subscriptions received on one Session. They
// belong to that session's leader, so they end with it: a new leader knows
// nothing of them, and its clients subscribe again.
type sessionLogs struct {
	ta     *taskAgent
	addr   string // the leader to publish to
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[string]context.CancelFunc // subscription ID -> stop
}

func (ta *taskAgent) newSessionLogs(ctx context.Context, addr string) *sessionLogs {
	ctx, cancel := context.WithCancel(ctx)
	return &sessionLogs{ta: ta, addr: addr, ctx: ctx, cancel: cancel, running: make(map[string]context.CancelFunc)}
}

// stop ends every subscription and waits for their goroutines.
func (l *sessionLogs) stop() {
	l.cancel()
	l.wg.Wait()
}

// handle starts a subscription, or stops one the leader closed.
func (l *sessionLogs) handle(sub *swarmpb.LogSubscription) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sub.GetClose() {
		if stop := l.running[sub.GetId()]; stop != nil {
			stop()
		}
		return
	}
	if _, dup := l.running[sub.GetId()]; dup || l.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(l.ctx)
	l.running[sub.GetId()] = cancel
	l.wg.Go(func() {
		defer func() {
			cancel()
			l.mu.Lock()
			delete(l.running, sub.GetId())
			l.mu.Unlock()
		}()
		if err := l.ta.publishLogs(ctx, l.addr, sub); err != nil && ctx.Err() == nil {
			l.ta.log.Debug("publishing logs", "subscription", sub.GetId(), "err", err)
		}
	})
}

// logItem is a line read, or an error to report instead.
type logItem struct {
	line *swarmpb.LogLine
	err  string
}

// publishLogs answers one subscription on its own PublishLogs stream: an
// empty first message (so the leader knows this node answered even when no
// line comes for a while), then the lines in batches, then close.
func (ta *taskAgent) publishLogs(ctx context.Context, addr string, sub *swarmpb.LogSubscription) error {
	conn, err := ta.leader.conn(addr)
	if err != nil {
		return err
	}
	stream, err := swarmpb.NewDispatcherClient(conn).PublishLogs(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&swarmpb.PublishLogsMessage{SubscriptionId: sub.GetId()}); err != nil {
		return err
	}
	rctx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	items := make(chan logItem, logBatchLines)
	go ta.readLogs(rctx, sub, items)
	// Whatever ends the loop, the readers are stopped and waited for
	// (items closes when they are done), so none outlives the subscription.
	defer func() {
		stopReading()
		for range items {
		}
	}()

	for {
		it, ok := <-items
		if !ok {
			break
		}
		msg := &swarmpb.PublishLogsMessage{SubscriptionId: sub.GetId()}
		size := 0
		// Take what is already waiting, so a backlog goes in few messages
		// and a trickle goes out at once.
	batch:
		for {
			if it.err != "" {
				msg.Error = it.err // one error per message: it ends the batch
				break
			}
			msg.Lines = append(msg.Lines, it.line)
			size += len(it.line.GetData())
			if len(msg.Lines) >= logBatchLines || size >= logBatchBytes {
				break
			}
			select {
			case it, ok = <-items:
				if !ok {
					break batch
				}
			default:
				break batch
			}
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
		if !ok {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return err // closed by the leader: it is not listening any more
	}
	if err := stream.Send(&swarmpb.PublishLogsMessage{SubscriptionId: sub.GetId(), Close: true}); err != nil {
		return err
	}
	_, err = stream.CloseAndRecv()
	return err
}

// readLogs reads the subscription's tasks that have a container on this
// node, concurrently, into items, and closes items when all are done.
// Task IDs without a container here are skipped: a removed container has
// no logs left, and the leader only names tasks it put on this node.
func (ta *taskAgent) readLogs(ctx context.Context, sub *swarmpb.LogSubscription, items chan<- logItem) {
	defer close(items)
	report := func(it logItem) error {
		select {
		case items <- it:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	lr, ok := ta.exec.(exec.LogReader)
	if !ok {
		_ = report(logItem{err: "this node's container engine cannot read logs"})
		return
	}
	containers, err := ta.exec.Containers(ctx)
	if err != nil {
		_ = report(logItem{err: "listing containers: " + err.Error()})
		return
	}
	want := make(map[string]bool, len(sub.GetTaskIds()))
	for _, id := range sub.GetTaskIds() {
		want[id] = true
	}
	opts := exec.LogOptions{Follow: sub.GetFollow(), Tail: sub.GetTail(), Timestamps: sub.GetTimestamps()}
	var wg sync.WaitGroup
	for _, c := range containers {
		if !want[c.TaskID] {
			continue
		}
		want[c.TaskID] = false // one reader per task
		wg.Go(func() {
			err := lr.Logs(ctx, exec.StubTask(c), opts, func(l *swarmpb.LogLine) error {
				return report(logItem{line: l})
			})
			if err != nil && ctx.Err() == nil {
				_ = report(logItem{err: "task " + c.TaskID + ": " + err.Error()})
			}
		})
	}
	wg.Wait()
}
