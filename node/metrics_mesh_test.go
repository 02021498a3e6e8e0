package node

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftswarm/raftswarm/mesh"
)

// collectFunc is a collector made of one collect function.
type collectFunc func(chan<- prometheus.Metric)

func (f collectFunc) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(f, ch) }
func (f collectFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

// gatherSeries collects f through a registry, as a scrape does, into
// series text ("name{label="value",...}") -> value.
func gatherSeries(t *testing.T, f collectFunc) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(f)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return out
}

// The kernel path's connection counts are reported beside the userspace
// proxy's, told apart by the path label, for TCP ports only and only on
// the kernel path.
func TestMeshMetricsByPath(t *testing.T) {
	st := &mesh.Stats{
		Forwarded: 5, Listeners: 2, Kernel: true, KernelForwarded: 40,
		Ports: []mesh.PortStats{
			{Protocol: "tcp", Port: 8080, Service: "web", Connections: 3, KernelConnections: 37},
			{Protocol: "udp", Port: 53, Service: "dns", Connections: 2},
		},
	}
	got := gatherSeries(t, func(ch chan<- prometheus.Metric) { collectMesh(ch, st) })
	for series, want := range map[string]float64{
		`raftswarm_mesh_connections_total{path="userspace"}`:                                               5,
		`raftswarm_mesh_connections_total{path="kernel"}`:                                                  40,
		`raftswarm_mesh_port_connections_total{path="userspace",port="8080",protocol="tcp",service="web"}`: 3,
		`raftswarm_mesh_port_connections_total{path="kernel",port="8080",protocol="tcp",service="web"}`:    37,
		`raftswarm_mesh_port_connections_total{path="userspace",port="53",protocol="udp",service="dns"}`:   2,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	if _, ok := got[`raftswarm_mesh_port_connections_total{path="kernel",port="53",protocol="udp",service="dns"}`]; ok {
		t.Error("a kernel series for a UDP port")
	}

	st.Kernel = false
	for series := range gatherSeries(t, func(ch chan<- prometheus.Metric) { collectMesh(ch, st) }) {
		if strings.Contains(series, `path="kernel"`) {
			t.Errorf("kernel series %s off the kernel path", series)
		}
	}
}
