package node_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// metricsCluster is a cluster whose members serve --metrics-addr on their
// own loopback address, port 0.
func metricsCluster(t *testing.T, managers, workers int) *testcluster.Cluster {
	return testcluster.New(t, managers, workers, testcluster.Options{
		Configure: func(name string, cfg *node.Config) {
			host := cfg.IngressAddr
			if host == "" {
				host = "127.0.0.1"
			}
			cfg.MetricsAddr = net.JoinHostPort(host, "0")
		},
	})
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// get fetches path on m's metrics address: status and body.
func get(m *testcluster.Member, path string) (int, string, error) {
	addr := m.Node.MetricsAddr()
	if addr == "" {
		return 0, "", fmt.Errorf("%s serves no metrics address", m.Name)
	}
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// scrape reads m's /metrics as series text ("name{labels}") -> value.
func scrape(t *testing.T, m *testcluster.Member) map[string]float64 {
	t.Helper()
	code, body, err := get(m, "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", m.Name, code, err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%s: bad sample %q", m.Name, line)
		}
		out[line[:i]] = v
	}
	return out
}

// series polls m's /metrics until want holds for the series.
func waitSeries(t *testing.T, m *testcluster.Member, series string, want func(float64) bool, what string) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		v, ok := scrape(t, m)[series]
		if !ok || !want(v) {
			return fmt.Errorf("%s on %s: got %v (present %v), want %s", series, m.Name, v, ok, what)
		}
		return nil
	})
}

func eq(n float64) func(float64) bool { return func(v float64) bool { return v == n } }

func TestMetricsSeriesMove(t *testing.T) {
	c := metricsCluster(t, 3, 1)
	ctx := ctxT(t, 60*time.Second)
	leader := c.Leader(10 * time.Second)
	for _, m := range c.Members {
		waitSeries(t, m, "raftswarm_node_ready", eq(1), "1")
	}
	waitSeries(t, leader, `raftswarm_store_objects{kind="node"}`, eq(4), "4")
	waitSeries(t, leader, `raftswarm_nodes{availability="active",role="manager",status="ready"}`, eq(3), "3")
	waitSeries(t, leader, `raftswarm_dispatcher_sessions`, eq(4), "4 sessions")
	waitSeries(t, leader, `raftswarm_manager_leader`, eq(1), "1")
	// The process collectors and Raft's go-metrics sink are there.
	got := scrape(t, leader)
	for _, s := range []string{"go_goroutines", "raftswarm_raft_apply", `raftswarm_raft_node_state{state="leader"}`} {
		if _, ok := got[s]; !ok {
			t.Errorf("series %s missing on the leader", s)
		}
	}

	// Work moves the task counts and the control API's counters.
	ctl := c.Control()
	resp, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: svcSpec("web", 0)})
	if err != nil {
		t.Fatal(err)
	}
	waitSeries(t, leader, `raftswarm_tasks{state="running"}`, eq(1), "1 running")
	svc := resp.GetService()
	spec := svc.GetSpec()
	spec.Replicas = 4
	if _, err := ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: svc.GetId(), Version: svc.GetMeta().GetVersion(), Spec: spec}); err != nil {
		t.Fatal(err)
	}
	waitSeries(t, leader, `raftswarm_tasks{state="running"}`, eq(4), "4 running")
	waitSeries(t, leader, `raftswarm_store_objects{kind="service"}`, eq(1), "1")
	waitSeries(t, leader, `raftswarm_orchestrator_reconcile_seconds_count`, func(v float64) bool { return v > 0 }, "> 0")
	waitSeries(t, leader, `raftswarm_scheduler_scheduling_seconds_count`, func(v float64) bool { return v > 0 }, "> 0")
	waitSeries(t, leader, `grpc_server_handled_total{grpc_code="OK",grpc_method="Heartbeat",grpc_service="raftswarm.v1.Dispatcher",grpc_type="unary",listener="cluster"}`,
		func(v float64) bool { return v > 0 }, "> 0")
	waitSeries(t, c.Get("m1"), `grpc_server_handled_total{grpc_code="OK",grpc_method="UpdateService",grpc_service="raftswarm.v1.Control",grpc_type="unary",listener="socket"}`,
		eq(1), "1")

	// A leader kill: the survivors see one more leader.
	survivor := c.Managers()[0]
	if survivor == leader {
		survivor = c.Managers()[1]
	}
	before := scrape(t, survivor)["raftswarm_raft_node_leader_changes_total"]
	procBefore := scrape(t, survivor)["raftswarm_raft_state_leader"]
	leader.Stop()
	waitSeries(t, survivor, "raftswarm_raft_node_leader_changes_total", func(v float64) bool { return v > before }, fmt.Sprintf("> %v", before))
	// hashicorp/raft's own counter is process-wide (see internal/metrics).
	waitSeries(t, survivor, "raftswarm_raft_state_leader", func(v float64) bool { return v > procBefore }, fmt.Sprintf("> %v", procBefore))
	_ = ctx
}

func TestReadyzFollowsQuorum(t *testing.T) {
	c := metricsCluster(t, 3, 1)
	ctx := ctxT(t, 60*time.Second)
	for _, m := range c.Members {
		testutil.Eventually(t, 20*time.Second, func() error {
			code, body, err := get(m, "/readyz")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("%s /readyz: %d %q %v", m.Name, code, body, err)
			}
			return nil
		})
		if code, _, err := get(m, "/healthz"); err != nil || code != http.StatusOK {
			t.Fatalf("%s /healthz: %d %v", m.Name, code, err)
		}
		if code, _, err := get(m, "/debug/pprof/"); err != nil || code != http.StatusNotFound {
			t.Fatalf("%s /debug/pprof/ without --debug: %d %v, want 404", m.Name, code, err)
		}
	}
	// The standard gRPC health service on the cluster port answers
	// without a client certificate.
	m1 := c.Get("m1")
	conn, err := grpc.NewClient(m1.Addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v %v, want SERVING", hc.GetStatus(), err)
	}

	// Two managers of three stop: the last has no quorum.
	ms := c.Managers()
	last, stopped := ms[0], ms[1:]
	for _, m := range stopped {
		m.Stop()
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		code, body, err := get(last, "/readyz")
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "no Raft leader") {
			return fmt.Errorf("%s /readyz without quorum: %d %q %v, want 503", last.Name, code, body, err)
		}
		return nil
	})
	waitSeries(t, last, "raftswarm_node_ready", eq(0), "0")
	if last == m1 {
		testutil.Eventually(t, 30*time.Second, func() error {
			hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
				return fmt.Errorf("health check without quorum: %v %v, want NOT_SERVING", hc.GetStatus(), err)
			}
			return nil
		})
	}
	// One comes back: quorum again.
	stopped[0].Start(t)
	testutil.Eventually(t, 30*time.Second, func() error {
		code, body, err := get(last, "/readyz")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%s /readyz with quorum back: %d %q %v, want 200", last.Name, code, body, err)
		}
		return nil
	})
}
