package dashboard_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/raftswarm/raftswarm/dashboard"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"github.com/raftswarm/raftswarm/state/statetest"
	"google.golang.org/protobuf/proto"
)

// bigStore is a store-only cluster: nodes, services and tasks running,
// spread evenly, as the managers' store would hold them.
func bigStore(tb testing.TB, nodes, services, tasks int) (*state.Store, *statetest.Applier) {
	st := state.New()
	app := statetest.NewApplier(st)
	var acts []*swarmpb.StoreAction
	flush := func() {
		if len(acts) == 0 {
			return
		}
		if _, err := app.Apply(context.Background(), state.Batch(acts...)); err != nil {
			tb.Fatal(err)
		}
		acts = nil
	}
	add := func(o any) {
		acts = append(acts, state.Create(o))
		if len(acts) == 2000 {
			flush()
		}
	}
	add(&swarmpb.Cluster{Id: "cluster1", Name: "default"})
	for i := 0; i < nodes; i++ {
		add(&swarmpb.Node{Id: fmt.Sprintf("node%04d", i), Status: swarmpb.NodeStatus_NODE_STATUS_READY,
			Spec: &swarmpb.NodeSpec{Labels: map[string]string{"zone": fmt.Sprintf("z%d", i%3)}},
			Description: &swarmpb.NodeDescription{Hostname: fmt.Sprintf("host-%04d", i),
				Resources: &swarmpb.Resources{NanoCpus: 8e9, MemoryBytes: 32 << 30}}})
	}
	per := tasks / services
	for s := 0; s < services; s++ {
		add(&swarmpb.Service{Id: fmt.Sprintf("svc%03d", s), SpecVersion: 1, Spec: &swarmpb.ServiceSpec{
			Name: fmt.Sprintf("service-%03d", s), Replicas: uint64(per), Container: &swarmpb.ContainerSpec{Image: "demo:v1"}}})
	}
	for i := 0; i < tasks; i++ {
		s := i % services
		add(&swarmpb.Task{Id: fmt.Sprintf("task%05d", i), ServiceId: fmt.Sprintf("svc%03d", s),
			NodeId: fmt.Sprintf("node%04d", i%nodes), Slot: uint64(i/services + 1), SpecVersion: 1,
			DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
			Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}})
	}
	flush()
	return st, app
}

// waitLoaded waits until the dashboard has loaded the store (a manager's
// dashboard has, long before anyone opens it).
func waitLoaded(tb testing.TB, url string) {
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(url + "events")
		if err != nil {
			tb.Fatal(err)
		}
		r := bufio.NewReaderSize(resp.Body, 1<<20)
		var line string
		for err == nil && !strings.HasPrefix(line, "data: ") {
			line, err = r.ReadString('\n')
		}
		resp.Body.Close()
		if strings.Contains(line, "node0000") {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal("the dashboard did not load the store within a minute")
		}
		time.Sleep(50 * time.Millisecond) // bounded by the deadline above
	}
}

func updateStored[T proto.Message](tb testing.TB, st *state.Store, app *statetest.Applier, get func(state.ReadTx) T, fn func(T)) {
	var cur T
	st.View(func(tx state.ReadTx) { cur = get(tx) })
	c := proto.Clone(cur).(T)
	fn(c)
	if _, err := app.Apply(context.Background(), state.Batch(state.Update(c))); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkBrowserLargeCluster measures, in headless Chromium, the first
// load of a dashboard over 1,000 nodes and 10,000 tasks (navigation until
// every task is painted) and the time from a store write until the page
// shows it: a node going down, and a service scaled by 100 tasks. Run:
//
//	go test ./dashboard/ -run '^$' -bench BrowserLargeCluster -benchtime 5x
//
// The small case (10 nodes, 100 tasks) runs in the same browser as a
// baseline: on a loaded machine the ratio says more than the times.
func BenchmarkBrowserLargeCluster(b *testing.B) {
	bctx := browser(b, 15*time.Minute)
	for _, size := range []struct{ nodes, services, tasks int }{{10, 5, 100}, {1000, 100, 10000}} {
		b.Run(fmt.Sprintf("nodes=%d/tasks=%d", size.nodes, size.tasks), func(b *testing.B) {
			benchBrowser(b, bctx, size.nodes, size.services, size.tasks)
		})
	}
}

func benchBrowser(b *testing.B, bctx context.Context, nodes, services, tasks int) {
	var first, nodeDown, scaled, snapAt, parse, paint, rendered time.Duration
	for i := 0; i < b.N; i++ {
		st, app := bigStore(b, nodes, services, tasks)
		s, err := dashboard.Listen("127.0.6.2:0", dashboard.Config{})
		if err != nil {
			b.Fatal(err)
		}
		s.SetSource(&dashboard.Source{Store: st, NodeID: "node0000", IsLeader: func() bool { return true }})
		waitLoaded(b, s.URL())

		t0 := time.Now()
		if err := chromedp.Do(bctx, chromedp.Navigate(s.URL())); err != nil {
			b.Fatal(err)
		}
		waitJS(b, bctx, time.Minute, "every task", fmt.Sprintf(
			`document.body.dataset.tasks === "%d" && document.querySelectorAll('#nodes tbody tr').length === %d`, tasks, nodes))
		// The columns on screen get their task cells (checked outside the timing).
		first += time.Since(t0)
		waitJS(b, bctx, time.Minute, "the first render", `window.dashboardTiming.renderedAt > window.dashboardTiming.snapshotAt`)
		tm, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]float64](`window.dashboardTiming`))
		if err != nil {
			b.Fatal(err)
		}
		snapAt += time.Duration(tm["snapshotAt"] * float64(time.Millisecond))
		parse += time.Duration(tm["parse"] * float64(time.Millisecond))
		paint += time.Duration(tm["paint"] * float64(time.Millisecond))
		rendered += time.Duration(tm["renderedAt"] * float64(time.Millisecond))
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById("grid").scrollIntoView(), true`)); err != nil {
			b.Fatal(err)
		}
		waitJS(b, bctx, time.Minute, "the first columns filled", `document.querySelector('#grid .col[data-seen] .task[data-task-id]')`)

		t1 := time.Now()
		updateStored(b, st, app, func(tx state.ReadTx) *swarmpb.Node { return tx.GetNode(fmt.Sprintf("node%04d", nodes/2)) }, func(n *swarmpb.Node) {
			n.Status = swarmpb.NodeStatus_NODE_STATUS_DOWN
		})
		waitJS(b, bctx, time.Minute, "a node down", nodeStatus(fmt.Sprintf("node%04d", nodes/2))+` === "down"`)
		nodeDown += time.Since(t1)

		t2 := time.Now()
		var acts []*swarmpb.StoreAction
		var svc *swarmpb.Service
		st.View(func(tx state.ReadTx) { svc = proto.Clone(tx.GetService("svc003")).(*swarmpb.Service) })
		svc.Spec.Replicas += 100
		acts = append(acts, state.Update(svc))
		for j := 0; j < 100; j++ {
			acts = append(acts, state.Create(&swarmpb.Task{Id: fmt.Sprintf("extra%d-%03d", i, j), ServiceId: "svc003",
				NodeId: fmt.Sprintf("node%04d", (j*7)%nodes), Slot: uint64(1000 + j), SpecVersion: 1,
				DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
				Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}))
		}
		if _, err := app.Apply(context.Background(), state.Batch(acts...)); err != nil {
			b.Fatal(err)
		}
		waitJS(b, bctx, time.Minute, "service-003 scaled", replicasCell("service-003")+fmt.Sprintf(` === "%d/%d"`, tasks/services+100, tasks/services+100))
		scaled += time.Since(t2)
		s.Close()
	}
	n := float64(b.N)
	b.ReportMetric(float64(first.Milliseconds())/n, "first-load-ms")
	b.ReportMetric(float64(snapAt.Milliseconds())/n, "snapshot-at-ms")
	b.ReportMetric(float64(rendered.Milliseconds())/n, "rendered-at-ms")
	b.ReportMetric(float64(parse.Milliseconds())/n, "parse-ms")
	b.ReportMetric(float64(paint.Milliseconds())/n, "first-paint-ms")
	b.ReportMetric(float64(nodeDown.Milliseconds())/n, "node-down-shown-ms")
	b.ReportMetric(float64(scaled.Milliseconds())/n, "scale-shown-ms")
}
