package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec/fake"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// nopReporter accepts every status and counts RUNNING reports.
type nopReporter struct{ running atomic.Int64 }

func (n *nopReporter) UpdateTaskStatus(_ context.Context, _ string, st *swarmpb.TaskStatus) error {
	if st.GetState() == stateRunning {
		n.running.Add(1)
	}
	return nil
}

// waitRunning polls (with a deadline) until n RUNNING reports arrived.
func (n *nopReporter) waitRunning(tb testing.TB, want int64) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for n.running.Load() < want {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d tasks RUNNING", n.running.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// benchLog logs as bench/scale's simulated nodes do: text, errors only.
func benchLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// busyWorker returns a worker running held tasks on a fake engine.
func busyWorker(tb testing.TB, held int) (*Worker, *nopReporter) {
	tb.Helper()
	ex, rep := fake.New("node1"), &nopReporter{}
	w := New(ex, rep, benchLog())
	tasks := make([]*swarmpb.Task, held)
	for i := range tasks {
		tasks[i] = task(fmt.Sprintf("held%04d", i), uint64(i+1), "img:v1")
	}
	if err := w.Assign(context.Background(), tasks); err != nil {
		tb.Fatal(err)
	}
	rep.waitRunning(tb, int64(held))
	return w, rep
}

// BenchmarkUpdateOneNewTask is the session message a node gets most while
// a service scales up: one new task, on a node already running 150. Each
// op adds one task and removes the previous one (the node stays at 151).
func BenchmarkUpdateOneNewTask(b *testing.B) {
	w, _ := busyWorker(b, 150)
	defer w.Close()
	updateOneNewTask(b, w)
}

// BenchmarkTaskLifecycle runs tasks to RUNNING and removes them, counting
// everything a task costs the agent (runner, reporter, wait); it reports
// the goroutines a running task holds.
func BenchmarkTaskLifecycle(b *testing.B) {
	const batch = 100
	w, rep := busyWorker(b, 0)
	defer w.Close()
	base := runtime.NumGoroutine()
	var perTask float64
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := range b.N {
		tasks := make([]*swarmpb.Task, batch)
		ids := make([]string, batch)
		for j := range tasks {
			ids[j] = fmt.Sprintf("t%06d-%03d", i, j)
			tasks[j] = task(ids[j], uint64(j+1), "img:v1")
		}
		if err := w.Update(context.Background(), tasks, nil); err != nil {
			b.Fatal(err)
		}
		rep.waitRunning(b, int64((i+1)*batch))
		perTask = float64(runtime.NumGoroutine()-base) / batch
		if err := w.Update(context.Background(), nil, ids); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(waitTimeout)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				b.Fatalf("%d goroutines left of removed tasks", runtime.NumGoroutine()-base)
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.ReportMetric(perTask, "goroutines/task")
	// CPU, not wall time: the op's wall time is mostly the polls' sleeps.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N*batch), "cpu-ns/task")
}

// cpuTime is the CPU time (user + system) the process used so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkUpdateOneNewTaskListAll is BenchmarkUpdateOneNewTask with an
// engine that can only list every container (as docker's does).
func BenchmarkUpdateOneNewTaskListAll(b *testing.B) {
	ex, rep := fake.New("node1"), &nopReporter{}
	w := New(listAll{ex}, rep, benchLog())
	defer w.Close()
	tasks := make([]*swarmpb.Task, 150)
	for i := range tasks {
		tasks[i] = task(fmt.Sprintf("held%04d", i), uint64(i+1), "img:v1")
	}
	if err := w.Assign(context.Background(), tasks); err != nil {
		b.Fatal(err)
	}
	rep.waitRunning(b, int64(len(tasks)))
	updateOneNewTask(b, w)
}

// updateOneNewTask times b.N session messages of one new task each, each
// removing the task the one before added.
func updateOneNewTask(b *testing.B, w *Worker) {
	prev := []string(nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("new%08d", i)
		if err := w.Update(context.Background(), []*swarmpb.Task{task(id, uint64(1000+i), "img:v1")}, prev); err != nil {
			b.Fatal(err)
		}
		prev = []string{id}
	}
}
