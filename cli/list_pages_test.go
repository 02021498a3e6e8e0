package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// pagedDaemon answers the lists of a fakeDaemon two items a page, as a
// manager does with many or large objects.
type pagedDaemon struct{ *fakeDaemon }

func page[T any](items []T, token string) ([]T, string) {
	from, _ := strconv.Atoi(token)
	to := min(from+2, len(items))
	next := ""
	if to < len(items) {
		next = strconv.Itoa(to)
	}
	return items[from:to], next
}

func (d pagedDaemon) ListNodes(_ context.Context, r *swarmpb.ListNodesRequest) (*swarmpb.ListNodesResponse, error) {
	_ = d.record("ListNodes", r)
	items, next := page(d.nodes, r.PageToken)
	return &swarmpb.ListNodesResponse{Nodes: items, NextPageToken: next}, nil
}

func (d pagedDaemon) ListServices(_ context.Context, r *swarmpb.ListServicesRequest) (*swarmpb.ListServicesResponse, error) {
	_ = d.record("ListServices", r)
	items, next := page(d.services, r.PageToken)
	return &swarmpb.ListServicesResponse{Services: items, NextPageToken: next}, nil
}

func (d pagedDaemon) ListTasks(_ context.Context, r *swarmpb.ListTasksRequest) (*swarmpb.ListTasksResponse, error) {
	_ = d.record("ListTasks", r)
	items, next := page(d.tasks(0), r.PageToken)
	names := map[string]string{}
	for _, t := range items {
		names[t.NodeId] = d.nodeNames[t.NodeId]
	}
	return &swarmpb.ListTasksResponse{Tasks: items, NodeNames: names, NextPageToken: next}, nil
}

func startPaged(t *testing.T, d pagedDaemon) string {
	t.Helper()
	return serveFake(t, d.fakeDaemon, d)
}

// node ls, service ls and service ps read every page, not the first.
func TestListsReadEveryPage(t *testing.T) {
	d := pagedDaemon{&fakeDaemon{info: &swarmpb.InfoResponse{}, nodeNames: map[string]string{}}}
	var tasks []*swarmpb.Task
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("id%d", i)
		d.nodes = append(d.nodes, &swarmpb.NodeInfo{Node: &swarmpb.Node{Id: id, Description: &swarmpb.NodeDescription{Hostname: "host" + id}}})
		d.services = append(d.services, &swarmpb.ServiceInfo{Service: &swarmpb.Service{Id: id, Spec: &swarmpb.ServiceSpec{Name: "svc" + id}}})
		d.nodeNames[id] = "host" + id
		tasks = append(tasks, &swarmpb.Task{Id: "task" + id, ServiceId: "s", ServiceName: "web", Slot: uint64(i + 1), NodeId: id,
			DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}})
	}
	d.tasks = func(int) []*swarmpb.Task { return tasks }
	host := startPaged(t, d)
	for _, tc := range []struct {
		args []string
		want string // one per item, with %d the item's number
	}{
		{[]string{"node", "ls"}, "hostid%d "},
		{[]string{"service", "ls"}, "svcid%d "},
		{[]string{"service", "ps", "web"}, "web.%d "},
	} {
		r := runCLI(host, tc.args...)
		expectOK(t, r)
		for i := 0; i < 5; i++ {
			want := fmt.Sprintf(tc.want, i)
			if tc.args[1] == "ps" {
				want = fmt.Sprintf(tc.want, i+1)
			}
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s: output lacks %q:\n%s", strings.Join(tc.args, " "), want, r.stdout)
			}
		}
		if tc.args[1] == "ps" && !strings.Contains(r.stdout, "hostid4") {
			t.Errorf("service ps: node names of later pages missing:\n%s", r.stdout)
		}
	}
}
