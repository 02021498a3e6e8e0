package fake

import (
	"context"
	"strings"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// AppendLog adds a line to the task's log as if its container printed it
// on stream ("stdout" or "stderr"), stamped now. A newline is added when
// line lacks one, like a process writing whole lines. The task needs no
// container: tests may prepare logs before the task runs.
func (e *Executor) AppendLog(taskID, stream, line string) {
	if !strings.HasSuffix(line, "\n") {
		line += "\n"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs[taskID] = append(e.logs[taskID], &swarmpb.LogLine{
		TaskId: taskID, Timestamp: time.Now().UnixNano(), Stream: stream, Data: []byte(line),
	})
	close(e.logWake) // wake the followers
	e.logWake = make(chan struct{})
}

// LogReaders returns how many Logs calls are in progress, so tests can see
// followers stop.
func (e *Executor) LogReaders() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.readers
}

// Logs implements exec.LogReader over the lines given to AppendLog. A
// follower keeps reading until ctx ends: fake containers never end the
// stream themselves.
func (e *Executor) Logs(ctx context.Context, t *swarmpb.Task, opts exec.LogOptions, emit func(*swarmpb.LogLine) error) error {
	e.mu.Lock()
	if e.engineErr != nil {
		defer e.mu.Unlock()
		return e.engineErr
	}
	e.readers++
	all := e.logs[t.GetId()]
	next := 0
	if opts.Tail >= 0 && int64(len(all)) > opts.Tail {
		next = len(all) - int(opts.Tail)
	}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.readers--
		e.mu.Unlock()
	}()
	for {
		e.mu.Lock()
		lines := e.logs[t.GetId()][next:]
		wake := e.logWake
		e.mu.Unlock()
		for _, l := range lines {
			// Lines are never changed once appended, but the receiver
			// owns what it gets.
			c := &swarmpb.LogLine{TaskId: l.TaskId, Timestamp: l.Timestamp, Stream: l.Stream, Data: l.Data}
			if err := emit(c); err != nil {
				return err
			}
		}
		next += len(lines)
		if !opts.Follow {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
