package docker

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

var _ exec.LogReader = (*Executor)(nil)

// maxLogLine bounds the bytes buffered for one line; a longer line goes out
// in pieces (Docker's json-file driver splits at 16 KiB anyway).
const maxLogLine = 64 << 10

// Logs reads the task's container logs. Timestamps are always asked of the
// engine: they are stripped from the data into LogLine.Timestamp, which
// keeps the data the container's own bytes whatever the client shows.
func (e *Executor) Logs(ctx context.Context, t *swarmpb.Task, opts exec.LogOptions, emit func(*swarmpb.LogLine) error) error {
	ctl, err := e.Controller(t)
	if err != nil {
		return err
	}
	id, err := ctl.(*controller).mustLookup(ctx)
	if err != nil {
		return err
	}
	tail := "all"
	if opts.Tail >= 0 {
		tail = strconv.FormatInt(opts.Tail, 10)
	}
	rc, err := e.engine.ContainerLogs(ctx, id, container.LogsOptions{
		ShowStdout: true, ShowStderr: true, Follow: opts.Follow, Tail: tail, Timestamps: true,
	})
	if err != nil {
		return fmt.Errorf("read logs of container %s: %w", exec.ContainerName(t, e.nodeID), err)
	}
	defer rc.Close()
	stdout := &lineWriter{task: t.GetId(), stream: "stdout", emit: emit}
	stderr := &lineWriter{task: t.GetId(), stream: "stderr", emit: emit}
	// Our containers never have a TTY, so the engine multiplexes both
	// streams over one connection with stdcopy's framing.
	_, err = stdcopy.StdCopy(stdout, stderr, rc)
	if err == nil {
		err = stdout.flush()
	}
	if err == nil {
		err = stderr.flush()
	}
	if ctx.Err() != nil {
		return ctx.Err() // the body read fails with a transport error first
	}
	return err
}

// lineWriter cuts one demultiplexed stream into lines and emits each with
// the timestamp Docker put in front of it.
type lineWriter struct {
	task, stream string
	emit         func(*swarmpb.LogLine) error
	buf          []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) >= maxLogLine {
				return len(p), w.flush()
			}
			return len(p), nil
		}
		if err := w.line(w.buf[:i+1]); err != nil {
			return 0, err
		}
		w.buf = w.buf[i+1:]
	}
}

// flush emits a pending partial line (the stream ended without a newline).
func (w *lineWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.line(w.buf)
	w.buf = nil
	return err
}

// line emits "<RFC3339Nano timestamp> <data>". A line without a parsable
// timestamp (a continuation of a split long line) keeps its bytes and gets
// no timestamp.
func (w *lineWriter) line(b []byte) error {
	l := &swarmpb.LogLine{TaskId: w.task, Stream: w.stream}
	if sp := bytes.IndexByte(b, ' '); sp > 0 {
		if ts, err := time.Parse(time.RFC3339Nano, string(b[:sp])); err == nil {
			l.Timestamp = ts.UnixNano()
			b = b[sp+1:]
		}
	}
	l.Data = bytes.Clone(b)
	return w.emit(l)
}
