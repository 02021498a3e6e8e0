package api

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// ctlRaft is a one-manager Raft over a store: every read is allowed.
type ctlRaft struct{ storeRaft }

func (r *ctlRaft) ReadBarrier(context.Context) error { return nil }
func (r *ctlRaft) Unreachable(string) bool           { return false }
func (r *ctlRaft) Members() ([]raft.Member, error) {
	return []raft.Member{{ID: "n0", Voter: true}}, nil
}

func newControl(t *testing.T) (*ControlServer, *ctlRaft) {
	st := state.New()
	r := &ctlRaft{storeRaft{store: st}}
	dtApply(t, &r.storeRaft, state.Create(&swarmpb.Cluster{Id: "c1"}))
	return &ControlServer{Store: st, Raft: r}, r
}

type localRouter struct{ srv swarmpb.ControlServer }

func (l localRouter) RouteControl(context.Context) (swarmpb.ControlServer, *grpc.ClientConn, error) {
	return l.srv, nil, nil
}

// serveControl serves Control as a daemon's socket does (ControlProxy in
// front of the leader's server), over gRPC with its default 4 MiB limit.
func serveControl(t *testing.T, s *ControlServer) swarmpb.ControlClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	swarmpb.RegisterControlServer(gs, &ControlProxy{Router: localRouter{s}})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return swarmpb.NewControlClient(conn)
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("err = %v, want %v containing %q", err, code, msg)
	}
}

// Services too large to list in one message (written straight to the
// store, as the API's size limits would refuse them now) are all listed:
// before, service ls failed with gRPC's "message larger than max".
func TestListServicesLargerThanOneMessage(t *testing.T) {
	s, r := newControl(t)
	blob := strings.Repeat("x", 700<<10)
	var acts []*swarmpb.StoreAction
	for i := 0; i < 12; i++ {
		acts = append(acts, state.Create(&swarmpb.Service{Id: fmt.Sprintf("svc%02d", i), SpecVersion: 1, Spec: &swarmpb.ServiceSpec{
			Name: fmt.Sprintf("big%02d", i), Labels: map[string]string{"blob": blob}, Container: &swarmpb.ContainerSpec{Image: "demo"}}}))
	}
	dtApply(t, &r.storeRaft, acts...)
	c := serveControl(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	infos, err := listing.Services(ctx, c)
	if err != nil {
		t.Fatalf("list services: %v", err)
	}
	if len(infos) != 12 {
		t.Fatalf("listed %d services, want 12", len(infos))
	}
	for i, si := range infos {
		if want := fmt.Sprintf("svc%02d", i); si.GetService().GetId() != want {
			t.Fatalf("service %d is %s, want %s (ID order, no repeats)", i, si.GetService().GetId(), want)
		}
	}
	// Each page stayed within the byte budget (one large item at most
	// goes over it alone).
	resp, err := c.ListServices(ctx, &swarmpb.ListServicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Services); n < 1 || n > 2 || resp.NextPageToken == "" {
		t.Fatalf("first page: %d services, next %q", n, resp.NextPageToken)
	}
}

func TestListTasksPages(t *testing.T) {
	s, r := newControl(t)
	acts := []*swarmpb.StoreAction{
		state.Create(&swarmpb.Node{Id: "n1", Description: &swarmpb.NodeDescription{Hostname: "host1"}}),
		state.Create(&swarmpb.Node{Id: "n2", Description: &swarmpb.NodeDescription{Hostname: "host2"}}),
		state.Create(&swarmpb.Service{Id: "s1", Spec: &swarmpb.ServiceSpec{Name: "web"}}),
		state.Create(&swarmpb.Service{Id: "s2", Spec: &swarmpb.ServiceSpec{Name: "db"}}),
	}
	for i := 0; i < 25; i++ {
		sid, node := "s1", "n1"
		if i >= 20 {
			sid, node = "s2", "n2"
		}
		acts = append(acts, state.Create(&swarmpb.Task{Id: fmt.Sprintf("t%02d", i), ServiceId: sid, NodeId: node}))
	}
	dtApply(t, &r.storeRaft, acts...)
	ctx := context.Background()

	var got []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := s.ListTasks(ctx, &swarmpb.ListTasksRequest{PageSize: 7, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Tasks) > 7 {
			t.Fatalf("page of %d tasks, asked for 7", len(resp.Tasks))
		}
		for _, tk := range resp.Tasks {
			got = append(got, tk.Id)
			if resp.NodeNames[tk.NodeId] == "" {
				t.Fatalf("page lacks the name of node %s of task %s", tk.NodeId, tk.Id)
			}
		}
		for id := range resp.NodeNames {
			if !pageHasNode(resp.Tasks, id) {
				t.Fatalf("page names node %s, none of its tasks is on it", id)
			}
		}
		if resp.NextPageToken == "" {
			break
		}
		token = resp.NextPageToken
	}
	if len(got) != 25 || got[0] != "t00" || got[24] != "t24" {
		t.Fatalf("tasks over pages: %v", got)
	}

	// Filters page too; and through the client helper.
	tasks, names, err := listing.Tasks(ctx, serveControl(t, s), &swarmpb.ListTasksRequest{Services: []string{"db"}, Node: "n2"})
	if err != nil || len(tasks) != 5 || names["n2"] != "host2" || len(names) != 1 {
		t.Fatalf("db tasks on n2: %d tasks, names %v, err %v", len(tasks), names, err)
	}

	// The last page is empty only past the end: a token after the last ID.
	resp, err := s.ListTasks(ctx, &swarmpb.ListTasksRequest{PageToken: pageToken("t24")})
	if err != nil || len(resp.Tasks) != 0 || resp.NextPageToken != "" {
		t.Fatalf("past the end: %d tasks, next %q, err %v", len(resp.Tasks), resp.NextPageToken, err)
	}
	// Exactly a page's worth leaves no next page.
	resp, err = s.ListTasks(ctx, &swarmpb.ListTasksRequest{PageSize: 25})
	if err != nil || len(resp.Tasks) != 25 || resp.NextPageToken != "" {
		t.Fatalf("all in one page: %d tasks, next %q, err %v", len(resp.Tasks), resp.NextPageToken, err)
	}
}

func pageHasNode(tasks []*swarmpb.Task, node string) bool {
	for _, tk := range tasks {
		if tk.NodeId == node {
			return true
		}
	}
	return false
}

func TestListNodesPages(t *testing.T) {
	s, r := newControl(t)
	var acts []*swarmpb.StoreAction
	for i := 0; i < 5; i++ {
		acts = append(acts, state.Create(&swarmpb.Node{Id: fmt.Sprintf("n%d", i), Description: &swarmpb.NodeDescription{Hostname: fmt.Sprintf("h%d", 4-i)}}))
	}
	dtApply(t, &r.storeRaft, acts...)
	ctx := context.Background()
	resp, err := s.ListNodes(ctx, &swarmpb.ListNodesRequest{PageSize: 3})
	if err != nil || len(resp.Nodes) != 3 || resp.Nodes[0].Node.Id != "n0" || resp.NextPageToken == "" {
		t.Fatalf("first page: %v, err %v", resp, err)
	}
	if resp.Nodes[0].ManagerStatus != "Leader" && resp.Nodes[0].ManagerStatus != "Reachable" {
		t.Fatalf("manager status not filled in: %q", resp.Nodes[0].ManagerStatus)
	}
	nodes, err := listing.Nodes(ctx, serveControl(t, s))
	if err != nil || len(nodes) != 5 {
		t.Fatalf("all nodes: %d, err %v", len(nodes), err)
	}
}

func TestPageArgs(t *testing.T) {
	for _, tc := range []struct {
		size int32
		want int
	}{{0, DefaultPageSize}, {1, 1}, {MaxPageSize, MaxPageSize}, {MaxPageSize + 1, MaxPageSize}, {1 << 30, MaxPageSize}} {
		n, after, err := pageArgs(tc.size, "")
		if err != nil || n != tc.want || after != "" {
			t.Errorf("page size %d: got %d %q %v, want %d", tc.size, n, after, err, tc.want)
		}
	}
	if _, _, err := pageArgs(-1, ""); err == nil {
		t.Error("negative page size accepted")
	}
	id := "3q079pvswnibdqlcn2o0mw4mt"
	if _, after, err := pageArgs(0, pageToken(id)); err != nil || after != id {
		t.Errorf("token round trip: %q, %v", after, err)
	}

	s, _ := newControl(t)
	ctx := context.Background()
	for _, tok := range []string{"!!not base64!!", "===", pageToken(strings.Repeat("x", 300)), pageToken("\xff\xfe")} {
		_, err := s.ListServices(ctx, &swarmpb.ListServicesRequest{PageToken: tok})
		wantCode(t, err, codes.InvalidArgument, "invalid page token")
		_, err = s.ListTasks(ctx, &swarmpb.ListTasksRequest{PageToken: tok})
		wantCode(t, err, codes.InvalidArgument, "invalid page token")
		_, err = s.ListNodes(ctx, &swarmpb.ListNodesRequest{PageToken: tok})
		wantCode(t, err, codes.InvalidArgument, "invalid page token")
	}
	_, err := s.ListNodes(ctx, &swarmpb.ListNodesRequest{PageSize: -5})
	wantCode(t, err, codes.InvalidArgument, "invalid page size")
}

// TestListServicesCounts: besides running (live and RUNNING), a service's
// info counts its live tasks, every RUNNING task (being shut down or not)
// and all its tasks, and those of its live RUNNING tasks that run its
// current spec version (an update's progress), so that a caller can follow
// a large service without listing its tasks (bench/scale).
func TestListServicesCounts(t *testing.T) {
	s, r := newControl(t)
	spec := &swarmpb.ServiceSpec{Name: "web", Replicas: 3, Container: &swarmpb.ContainerSpec{Image: "demo"}}
	acts := []*swarmpb.StoreAction{state.Create(&swarmpb.Service{Id: "s1", SpecVersion: 2, Spec: spec})}
	task := func(id string, desired, st swarmpb.TaskState) *swarmpb.StoreAction {
		return state.Create(&swarmpb.Task{Id: id, ServiceId: "s1", Slot: 1, SpecVersion: 2, Spec: spec, DesiredState: desired,
			Status: &swarmpb.TaskStatus{State: st}})
	}
	const (
		run      = swarmpb.TaskState_TASK_STATE_RUNNING
		shutdown = swarmpb.TaskState_TASK_STATE_SHUTDOWN
	)
	acts = append(acts,
		task("t1", run, run), // live, running
		task("t2", run, swarmpb.TaskState_TASK_STATE_ASSIGNED), // live, not yet running
		task("t3", shutdown, run),                              // being shut down, still running
		task("t4", shutdown, shutdown),                         // history
		task("t5", swarmpb.TaskState_TASK_STATE_COMPLETE, run), // being stopped (desired COMPLETE), still running
		state.Create(&swarmpb.Task{Id: "t6", ServiceId: "s1", Slot: 2, SpecVersion: 1, Spec: spec, DesiredState: run, // live, running, not yet updated
			Status: &swarmpb.TaskStatus{State: run}}),
	)
	dtApply(t, &r.storeRaft, acts...)
	c := serveControl(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.ListServices(ctx, &swarmpb.ListServicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Services) != 1 {
		t.Fatalf("%d services listed, want 1", len(resp.Services))
	}
	got := resp.Services[0]
	if got.Running != 2 || got.Live != 3 || got.RunningAny != 4 || got.Total != 6 {
		t.Fatalf("running %d live %d running_any %d total %d, want 2 3 4 6", got.Running, got.Live, got.RunningAny, got.Total)
	}
	if got.RunningCurrent != 1 {
		t.Fatalf("running_current %d, want 1 (t1; t6 runs an older spec version)", got.RunningCurrent)
	}
}
