package cli

import (
	"encoding/json"
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func testNodes() []*swarmpb.NodeInfo {
	mk := func(id, host string, st swarmpb.NodeStatus, av swarmpb.NodeAvailability, ms string) *swarmpb.NodeInfo {
		return &swarmpb.NodeInfo{
			Node: &swarmpb.Node{
				Id:          id,
				Spec:        &swarmpb.NodeSpec{Availability: av, Labels: map[string]string{"zone": "a"}},
				Description: &swarmpb.NodeDescription{Hostname: host, EngineVersion: "27.1.0", Os: "linux", Arch: "x86_64"},
				Status:      st,
				Addr:        "10.0.0.9:2377",
			},
			ManagerStatus: ms,
		}
	}
	return []*swarmpb.NodeInfo{
		mk("n3", "worker1", swarmpb.NodeStatus_NODE_STATUS_DOWN, swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN, ""),
		mk("n1", "manager1", swarmpb.NodeStatus_NODE_STATUS_READY, swarmpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE, "Leader"),
		mk("n2", "manager2", swarmpb.NodeStatus_NODE_STATUS_UNKNOWN, swarmpb.NodeAvailability_NODE_AVAILABILITY_PAUSE, "Unreachable"),
	}
}

func nodeFake(t *testing.T) (*fakeDaemon, string) {
	d := &fakeDaemon{info: &swarmpb.InfoResponse{NodeId: "n1"}, nodes: testNodes()}
	return d, startFake(t, d)
}

func TestNodeLsTable(t *testing.T) {
	_, host := nodeFake(t)
	r := runCLI(host, "node", "ls")
	expectOK(t, r)
	want := `ID     HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION
n1 *   manager1   Ready     Active         Leader           27.1.0
n2     manager2   Unknown   Pause          Unreachable      27.1.0
n3     worker1    Down      Drain                           27.1.0
`
	if r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestNodeLsQuietAndFormat(t *testing.T) {
	_, host := nodeFake(t)
	r := runCLI(host, "node", "ls", "-q")
	expectOK(t, r)
	if r.stdout != "n1\nn2\nn3\n" {
		t.Fatalf("-q stdout %q", r.stdout)
	}

	r = runCLI(host, "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}} {{.Self}}")
	expectOK(t, r)
	if r.stdout != "manager1 Ready Leader true\nmanager2 Unknown Unreachable false\nworker1 Down  false\n" {
		t.Fatalf("template stdout %q", r.stdout)
	}

	r = runCLI(host, "node", "ls", "--format", "json")
	expectOK(t, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("json stdout %q", r.stdout)
	}
	var row map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &row); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"ID": "n1", "Hostname": "manager1", "Status": "Ready", "Availability": "Active",
		"ManagerStatus": "Leader", "EngineVersion": "27.1.0", "Self": true}
	for k, v := range want {
		if row[k] != v {
			t.Fatalf("json key %s = %v, want %v (row %v)", k, row[k], v, row)
		}
	}
	if len(row) != len(want) {
		t.Fatalf("json row has keys %v", row)
	}
}

func TestNodeLsBadTemplate(t *testing.T) {
	d, host := nodeFake(t)
	r := runCLI(host, "node", "ls", "--format", "{{.Hostname")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: invalid --format template: ") || r.stdout != "" {
		t.Fatalf("got %+v", r)
	}
	r = runCLI(host, "node", "ls", "--format", "{{.Nope}}")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: invalid --format template: ") || r.stdout != "" {
		t.Fatalf("got %+v", r)
	}
	if n := len(d.callsTo("ListNodes")); n != 1 {
		t.Fatalf("ListNodes called %d times, want 1 (only for the execution error)", n)
	}
}

func TestNodePromoteDemote(t *testing.T) {
	d, host := nodeFake(t)
	r := runCLI(host, "node", "promote", "n2", "n3")
	expectOK(t, r)
	if r.stdout != "Node n2 promoted to a manager in the swarm.\nNode n3 promoted to a manager in the swarm.\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	r = runCLI(host, "node", "demote", "ghost", "n2")
	expectError(t, r, "node ghost not found")
	if r.stdout != "Manager n2 demoted in the swarm.\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	reqs := d.callsTo("UpdateNode")
	if len(reqs) != 4 {
		t.Fatalf("%d UpdateNode calls", len(reqs))
	}
	wantRoles := []swarmpb.NodeRole{swarmpb.NodeRole_NODE_ROLE_MANAGER, swarmpb.NodeRole_NODE_ROLE_MANAGER,
		swarmpb.NodeRole_NODE_ROLE_WORKER, swarmpb.NodeRole_NODE_ROLE_WORKER}
	wantNodes := []string{"n2", "n3", "ghost", "n2"}
	for i, m := range reqs {
		req := m.(*swarmpb.UpdateNodeRequest)
		if req.DesiredRole == nil || *req.DesiredRole != wantRoles[i] || req.GetNode() != wantNodes[i] ||
			req.Availability != nil || len(req.LabelAdd) != 0 || len(req.LabelRm) != 0 {
			t.Fatalf("request %d = %v", i, req)
		}
	}
}

func TestNodeUpdate(t *testing.T) {
	d, host := nodeFake(t)
	r := runCLI(host, "node", "update", "--availability", "drain", "--label-add", "zone=b", "--label-add", "ssd", "--label-rm", "old", "n3")
	expectOK(t, r)
	if r.stdout != "n3\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	reqs := d.callsTo("UpdateNode")
	if len(reqs) != 1 {
		t.Fatalf("%d calls", len(reqs))
	}
	req := reqs[0].(*swarmpb.UpdateNodeRequest)
	if req.GetAvailability() != swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN || req.Availability == nil ||
		req.DesiredRole != nil || req.LabelAdd["zone"] != "b" || req.LabelAdd["ssd"] != "" || len(req.LabelAdd) != 2 ||
		len(req.LabelRm) != 1 || req.LabelRm[0] != "old" {
		t.Fatalf("request %v", req)
	}
}

func TestNodeUpdateBadInputSendsNothing(t *testing.T) {
	d, host := nodeFake(t)
	expectError(t, runCLI(host, "node", "update", "--availability", "x", "n1"), `invalid availability "x": must be active, pause or drain`)
	expectError(t, runCLI(host, "node", "update", "--label-add", "=v", "n1"), "node label key is required")
	expectError(t, runCLI(host, "node", "update", "n1", "n2"), `"swarmctl node update" requires exactly 1 argument(s) (NODE), got 2`)
	if c := d.allCalls(); len(c) != 0 {
		t.Fatalf("calls sent: %v", c)
	}
}

func TestNodeInspect(t *testing.T) {
	_, host := nodeFake(t)
	r := runCLI(host, "node", "inspect", "n1", "worker1")
	expectOK(t, r)
	var nodes []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &nodes); err != nil {
		t.Fatalf("%v in %s", err, r.stdout)
	}
	if len(nodes) != 2 || nodes[0]["id"] != "n1" || nodes[0]["managerStatus"] != "Leader" || nodes[1]["id"] != "n3" {
		t.Fatalf("nodes %v", nodes)
	}
	if !strings.HasPrefix(r.stdout, "[\n    {\n") {
		t.Fatalf("not indented: %q", r.stdout[:20])
	}

	r = runCLI(host, "node", "inspect", "--pretty", "n1")
	expectOK(t, r)
	for _, want := range []string{"ID:", "n1", "Hostname:", "manager1", "Joined at:", "State:", "Ready", "Availability:", "Active",
		"Manager Status:", "Leader", "Address:", "10.0.0.9:2377", "Platform:", "Operating System:", "linux", "Resources:",
		"Engine Version:", "27.1.0", "Labels:", "zone=a"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("pretty output lacks %q:\n%s", want, r.stdout)
		}
	}

	r = runCLI(host, "node", "inspect", "nope")
	expectError(t, r, "node nope not found")
}

func TestNodeRm(t *testing.T) {
	d, host := nodeFake(t)
	r := runCLI(host, "node", "rm", "--force", "n3")
	expectOK(t, r)
	if r.stdout != "n3\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	if reqs := d.callsTo("RemoveNode"); len(reqs) != 1 || !reqs[0].(*swarmpb.RemoveNodeRequest).GetForce() {
		t.Fatalf("requests %v", reqs)
	}
}
