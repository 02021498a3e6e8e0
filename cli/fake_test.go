package cli

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeDaemon serves canned Local and Control answers and records requests.
type fakeDaemon struct {
	swarmpb.UnimplementedLocalServer
	swarmpb.UnimplementedControlServer

	mu       sync.Mutex
	calls    []string
	requests []proto.Message

	info      *swarmpb.InfoResponse
	nodes     []*swarmpb.NodeInfo
	services  []*swarmpb.ServiceInfo
	tokens    map[swarmpb.NodeRole]string
	nodeNames map[string]string
	// tasks returns the tasks for the n-th ListTasks call (0-based).
	tasks func(n int) []*swarmpb.Task
	// errs makes a method fail with its status message.
	errs map[string]string
	// created is what CreateService/GetService return.
	created *swarmpb.Service
	// logs is what ServiceLogs streams (service_logs_test.go).
	logs []*swarmpb.ServiceLogsMessage

	taskCalls int
	// conflicts makes the next UpdateService calls fail as a service
	// changed since it was read (and changes it).
	conflicts int
}

func (d *fakeDaemon) record(method string, req proto.Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, method)
	d.requests = append(d.requests, proto.Clone(req))
	if msg, ok := d.errs[method]; ok {
		return status.Error(codes.FailedPrecondition, msg)
	}
	return nil
}

// callsTo returns the recorded requests to method.
func (d *fakeDaemon) callsTo(method string) []proto.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []proto.Message
	for i, c := range d.calls {
		if c == method {
			out = append(out, d.requests[i])
		}
	}
	return out
}

func (d *fakeDaemon) allCalls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

func (d *fakeDaemon) Init(_ context.Context, r *swarmpb.InitRequest) (*swarmpb.InitResponse, error) {
	if err := d.record("Init", r); err != nil {
		return nil, err
	}
	return &swarmpb.InitResponse{NodeId: "node1", WorkerToken: "SWMTKN-worker", ManagerAddr: "10.0.0.1:2377"}, nil
}

func (d *fakeDaemon) Join(_ context.Context, r *swarmpb.JoinRequest) (*swarmpb.JoinResponse, error) {
	if err := d.record("Join", r); err != nil {
		return nil, err
	}
	return &swarmpb.JoinResponse{NodeId: "node2", Role: swarmpb.NodeRole_NODE_ROLE_MANAGER}, nil
}

func (d *fakeDaemon) Leave(_ context.Context, r *swarmpb.LeaveRequest) (*swarmpb.LeaveResponse, error) {
	if err := d.record("Leave", r); err != nil {
		return nil, err
	}
	return &swarmpb.LeaveResponse{}, nil
}

func (d *fakeDaemon) Info(_ context.Context, r *swarmpb.InfoRequest) (*swarmpb.InfoResponse, error) {
	if err := d.record("Info", r); err != nil {
		return nil, err
	}
	return d.info, nil
}

func (d *fakeDaemon) ListNodes(_ context.Context, r *swarmpb.ListNodesRequest) (*swarmpb.ListNodesResponse, error) {
	if err := d.record("ListNodes", r); err != nil {
		return nil, err
	}
	return &swarmpb.ListNodesResponse{Nodes: d.nodes}, nil
}

func (d *fakeDaemon) GetNode(_ context.Context, r *swarmpb.GetNodeRequest) (*swarmpb.GetNodeResponse, error) {
	if err := d.record("GetNode", r); err != nil {
		return nil, err
	}
	for _, n := range d.nodes {
		if n.GetNode().GetId() == r.GetNode() || n.GetNode().GetDescription().GetHostname() == r.GetNode() {
			return &swarmpb.GetNodeResponse{Node: n}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "node %s not found", r.GetNode())
}

func (d *fakeDaemon) UpdateNode(_ context.Context, r *swarmpb.UpdateNodeRequest) (*swarmpb.UpdateNodeResponse, error) {
	if err := d.record("UpdateNode", r); err != nil {
		return nil, err
	}
	if r.GetNode() == "ghost" {
		return nil, status.Error(codes.NotFound, "node ghost not found")
	}
	return &swarmpb.UpdateNodeResponse{}, nil
}

func (d *fakeDaemon) RemoveNode(_ context.Context, r *swarmpb.RemoveNodeRequest) (*swarmpb.RemoveNodeResponse, error) {
	if err := d.record("RemoveNode", r); err != nil {
		return nil, err
	}
	return &swarmpb.RemoveNodeResponse{}, nil
}

func (d *fakeDaemon) GetJoinToken(_ context.Context, r *swarmpb.GetJoinTokenRequest) (*swarmpb.GetJoinTokenResponse, error) {
	if err := d.record("GetJoinToken", r); err != nil {
		return nil, err
	}
	tok := d.tokens[r.GetRole()]
	if r.GetRotate() {
		tok += "-rotated"
	}
	return &swarmpb.GetJoinTokenResponse{Token: tok, Managers: []string{"10.0.0.1:2377", "10.0.0.2:2377"}}, nil
}

func (d *fakeDaemon) CreateService(_ context.Context, r *swarmpb.CreateServiceRequest) (*swarmpb.CreateServiceResponse, error) {
	if err := d.record("CreateService", r); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.created == nil {
		d.created = &swarmpb.Service{Id: "svcid0123456789", Meta: &swarmpb.Meta{Version: 7}, SpecVersion: 1}
	}
	d.created.Spec = r.GetSpec()
	return &swarmpb.CreateServiceResponse{Service: d.created}, nil
}

func (d *fakeDaemon) UpdateService(_ context.Context, r *swarmpb.UpdateServiceRequest) (*swarmpb.UpdateServiceResponse, error) {
	if err := d.record("UpdateService", r); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conflicts > 0 {
		d.conflicts--
		d.created.Meta.Version++
		return nil, status.Errorf(codes.Aborted, "service %s changed since it was read; try again", d.created.GetSpec().GetName())
	}
	return &swarmpb.UpdateServiceResponse{Service: d.created}, nil
}

func (d *fakeDaemon) GetService(_ context.Context, r *swarmpb.GetServiceRequest) (*swarmpb.GetServiceResponse, error) {
	if err := d.record("GetService", r); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.created == nil {
		return nil, status.Errorf(codes.NotFound, "service %s not found", r.GetService())
	}
	return &swarmpb.GetServiceResponse{Service: d.created}, nil
}

func (d *fakeDaemon) ListServices(_ context.Context, r *swarmpb.ListServicesRequest) (*swarmpb.ListServicesResponse, error) {
	if err := d.record("ListServices", r); err != nil {
		return nil, err
	}
	return &swarmpb.ListServicesResponse{Services: d.services}, nil
}

func (d *fakeDaemon) RemoveService(_ context.Context, r *swarmpb.RemoveServiceRequest) (*swarmpb.RemoveServiceResponse, error) {
	if err := d.record("RemoveService", r); err != nil {
		return nil, err
	}
	return &swarmpb.RemoveServiceResponse{}, nil
}

func (d *fakeDaemon) ListTasks(_ context.Context, r *swarmpb.ListTasksRequest) (*swarmpb.ListTasksResponse, error) {
	if err := d.record("ListTasks", r); err != nil {
		return nil, err
	}
	d.mu.Lock()
	n := d.taskCalls
	d.taskCalls++
	d.mu.Unlock()
	var tasks []*swarmpb.Task
	if d.tasks != nil {
		tasks = d.tasks(n)
	}
	return &swarmpb.ListTasksResponse{Tasks: tasks, NodeNames: d.nodeNames}, nil
}

// startFake serves d on a unix socket and returns the --host value.
func startFake(t *testing.T, d *fakeDaemon) string {
	t.Helper()
	return serveFake(t, d, d)
}

// serveFake serves a fake Local and Control API on a unix socket for the
// length of the test and returns the --host value.
func serveFake(t *testing.T, local swarmpb.LocalServer, control swarmpb.ControlServer) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	swarmpb.RegisterLocalServer(srv, local)
	swarmpb.RegisterControlServer(srv, control)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return "unix://" + sock
}

// testNow is the clock the CLI sees in tests.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs swarmctl against host in-process.
func runCLI(host string, args ...string) result {
	return runCLIOpts(options{}, host, args...)
}

func runCLIOpts(opts options, host string, args ...string) result {
	var out, errOut bytes.Buffer
	if opts.pollInterval == 0 {
		opts.pollInterval = time.Millisecond
	}
	opts.now = func() time.Time { return testNow }
	if opts.terminal == nil {
		no := false
		opts.terminal = &no
	}
	code := run(opts, append([]string{"-H", host}, args...), &out, &errOut)
	return result{out.String(), errOut.String(), code}
}

func expectOK(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
}

func expectError(t *testing.T, r result, want string) {
	t.Helper()
	if r.code != 1 {
		t.Fatalf("exit %d, want 1 (stdout %q)", r.code, r.stdout)
	}
	if r.stderr != "Error: "+want+"\n" {
		t.Fatalf("stderr = %q, want %q", r.stderr, "Error: "+want+"\n")
	}
}
