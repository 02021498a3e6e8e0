package cli

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func (d *fakeDaemon) ServiceLogs(r *swarmpb.ServiceLogsRequest, stream grpc.ServerStreamingServer[swarmpb.ServiceLogsMessage]) error {
	if err := d.record("ServiceLogs", r); err != nil {
		return err
	}
	if r.GetTarget() != "web" {
		return status.Errorf(codes.NotFound, "service %s not found", r.GetTarget())
	}
	for _, m := range d.logs {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

func TestServiceLogs(t *testing.T) {
	ts := time.Date(2025, 6, 1, 12, 0, 1, 500, time.UTC).UnixNano()
	web1 := &swarmpb.LogContext{ServiceName: "web", Slot: 1, NodeId: "n1", NodeName: "host1"}
	glob := &swarmpb.LogContext{ServiceName: "web", NodeId: "n2id", NodeName: "host2"}
	d := &fakeDaemon{logs: []*swarmpb.ServiceLogsMessage{
		{
			Lines: []*swarmpb.LogLine{
				{TaskId: "task1aaaaaaaaaaaaaaa", Timestamp: ts, Stream: "stdout", Data: []byte("hello\n")},
				{TaskId: "task1aaaaaaaaaaaaaaa", Timestamp: ts, Stream: "stderr", Data: []byte("oops\n")},
			},
			Tasks: map[string]*swarmpb.LogContext{"task1aaaaaaaaaaaaaaa": web1},
		},
		{
			Lines: []*swarmpb.LogLine{
				{TaskId: "task2", Timestamp: ts, Stream: "stdout", Data: []byte("no newline")},
				{TaskId: "task2", Stream: "error", Data: []byte("node host3 is not connected")},
			},
			Tasks: map[string]*swarmpb.LogContext{"task2": glob},
		},
	}}
	host := startFake(t, d)

	r := runCLI(host, "service", "logs", "--tail", "5", "web")
	expectOK(t, r)
	if want := "web.1.task1aaaaaaa@host1 | hello\nweb.n2id.task2@host2 | no newline\n"; r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if want := "web.1.task1aaaaaaa@host1 | oops\nWarning: node host3 is not connected\n"; r.stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
	}
	req := d.callsTo("ServiceLogs")[0].(*swarmpb.ServiceLogsRequest)
	if req.GetTarget() != "web" || req.GetTail() != 5 || req.GetFollow() || req.GetTimestamps() {
		t.Errorf("request %v", req)
	}

	r = runCLI(host, "service", "logs", "-f", "-t", "web")
	expectOK(t, r)
	if want := "2025-06-01T12:00:01.0000005Z web.1.task1aaaaaaa@host1 | hello\n"; r.stdout[:len(want)] != want {
		t.Errorf("stdout with timestamps:\n%s\nwant first line:\n%s", r.stdout, want)
	}
	req = d.callsTo("ServiceLogs")[1].(*swarmpb.ServiceLogsRequest)
	if req.GetTail() != -1 || !req.GetFollow() || !req.GetTimestamps() {
		t.Errorf("request %v", req)
	}

	expectError(t, runCLI(host, "service", "logs", "nope"), "service nope not found")
	expectError(t, runCLI(host, "service", "logs", "--tail", "-2", "web"), "invalid --tail -2: use a number of lines, or -1 for all")
}
