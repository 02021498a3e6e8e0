package metrics

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestHandler(t *testing.T) {
	var notReady error = errors.New("no Raft leader")
	reg := New()
	h := Handler(ServerConfig{Registry: reg, Ready: func() error { return notReady }})
	if code, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "no Raft leader") {
		t.Errorf("/readyz not ready: %d %q", code, body)
	}
	notReady = nil
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Errorf("/readyz ready: %d", code)
	}
	if code, _ := get(t, h, "/debug/pprof/"); code != 404 {
		t.Errorf("pprof without Debug: %d, want 404", code)
	}
	if code, _ := get(t, Handler(ServerConfig{Registry: reg, Debug: true}), "/debug/pprof/"); code != 200 {
		t.Errorf("pprof with Debug: %d, want 200", code)
	}
	reg.ComponentFailed("scheduler")
	code, body := get(t, h, "/metrics")
	for _, want := range []string{"go_goroutines", `raftswarm_leader_component_failures_total{component="scheduler"} 1`, "process_"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q (%d)", want, code)
		}
	}
}

// Raft's go-metrics global is process-wide: every registry shows it.
func TestRaftSinkSharedByRegistries(t *testing.T) {
	a, b := New(), New()
	gometrics.IncrCounter([]string{"raft", "transition", "obs_test"}, 1)
	gometrics.IncrCounter([]string{"raft", "net", "obs_test"}, 1) // filtered out
	for _, r := range []*Registry{a, b} {
		code, body := get(t, Handler(ServerConfig{Registry: r}), "/metrics")
		if code != 200 || !strings.Contains(body, "raftswarm_raft_transition_obs_test 1") {
			t.Errorf("registry lacks the go-metrics series: %d", code)
		}
		if strings.Contains(body, "raftswarm_raft_net_obs_test") {
			t.Error("a series outside the allowed prefixes was exported")
		}
	}
}

// A nil Registry records nothing and panics nowhere.
func TestNilRegistry(t *testing.T) {
	var r *Registry
	r.Register()
	r.ComponentFailed("x")
	r.WorkRestarted()
	if r.GRPCServerOptions(ListenerCluster) != nil || r.Reconcile() != nil || r.Scheduling() != nil || r.Registerer() != nil {
		t.Error("nil Registry returned something")
	}
	ObserveSince(r.Reconcile(), time.Now())
}

func TestListenBindError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Listen(ServerConfig{Addr: l.Addr().String(), Registry: New()})
	if err == nil || !strings.HasPrefix(err.Error(), "--metrics-addr "+l.Addr().String()) {
		t.Fatalf("bind error %v, want one naming --metrics-addr", err)
	}
	s, err := Listen(ServerConfig{Addr: "127.0.0.1:0", Registry: New()})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.Addr() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// The cost hashicorp/raft pays per sample: exported (reaches the sink),
// filtered out (stops at the allow list), and with no sink (blackhole).
// go test -run - -bench RaftSample ./internal/metrics/
func BenchmarkRaftSample(b *testing.B) {
	New()
	start := time.Now()
	for _, bc := range []struct {
		name string
		key  []string
		on   bool
	}{
		{"exported", []string{"raft", "commitTime"}, true},
		{"filtered", []string{"raft", "net", "rpcDecode"}, true},
		{"blackhole", []string{"raft", "commitTime"}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if err := SetRaftSink(bc.on); err != nil {
				b.Fatal(err)
			}
			defer SetRaftSink(true)
			for b.Loop() {
				gometrics.MeasureSince(bc.key, start)
			}
		})
	}
}
