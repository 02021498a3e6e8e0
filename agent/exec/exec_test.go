package exec

import (
	"slices"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestNamingLabelsEnv(t *testing.T) {
	tk := &swarmpb.Task{Id: "t1", ServiceId: "s1", ServiceName: "web", Slot: 2,
		Spec: &swarmpb.ServiceSpec{Container: &swarmpb.ContainerSpec{
			Env: []string{"A=1"}, Labels: map[string]string{LabelNodeID: "spoof", "x": "y"}}}}
	if got := ContainerName(tk, "n1"); got != "web.2.t1" {
		t.Fatalf("name %q", got)
	}
	tk.Spec.Mode = swarmpb.ServiceMode_SERVICE_MODE_GLOBAL
	if got := ContainerName(tk, "n1"); got != "web.n1.t1" {
		t.Fatalf("global name %q", got)
	}
	l := ContainerLabels(tk, "n1")
	if l[LabelNodeID] != "n1" || l["x"] != "y" || l[LabelTaskSlot] != "2" {
		t.Fatalf("labels %v", l)
	}
	if env := ContainerEnv(tk, "n1"); !slices.Equal(env, []string{"A=1", "TASK_ID=t1", "NODE_ID=n1", "SERVICE_NAME=web"}) {
		t.Fatalf("env %v", env)
	}
	var info ContainerInfo
	InfoFromLabels(&info, l)
	if stub := StubTask(info); ContainerName(stub, "n1") != "web.2.t1" {
		t.Fatalf("stub %v maps to %q", stub, ContainerName(stub, "n1"))
	}
	if StopGracePeriodNs(tk) != DefaultStopGracePeriodNs {
		t.Fatal("grace default")
	}
}
