package node

import (
	"cmp"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftswarm/raftswarm/internal/metrics"
	"github.com/raftswarm/raftswarm/manager"
	"github.com/raftswarm/raftswarm/mesh"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Metrics is the node's registry; nil when metrics are off.
func (n *Node) Metrics() *metrics.Registry { return n.cfg.Metrics }

// MetricsAddr is the bound metrics address, "" when none is served.
func (n *Node) MetricsAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.metricsSrv == nil {
		return ""
	}
	return n.metricsSrv.Addr()
}

// registerMetrics adds the node's collector to its registry. It is
// registered once for the node's life and reads, at scrape time, whatever
// manager and agent run then (they come and go with role changes).
func (n *Node) registerMetrics() {
	n.cfg.Metrics.Register(&nodeCollector{n: n})
}

// serveMetrics binds --metrics-addr, if set.
func (n *Node) serveMetrics() error {
	if n.cfg.MetricsAddr == "" {
		return nil
	}
	srv, err := metrics.Listen(metrics.ServerConfig{
		Addr: n.cfg.MetricsAddr, Registry: n.cfg.Metrics, Ready: n.Ready, Debug: n.cfg.Debug, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.metricsSrv = srv
	n.mu.Unlock()
	n.log.Info("serving metrics", "addr", srv.Addr(), "pprof", n.cfg.Debug)
	return nil
}

func (n *Node) stopMetrics() {
	n.mu.Lock()
	srv := n.metricsSrv
	n.metricsSrv = nil
	n.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Ready is /readyz: nil when this node does its job in a cluster. A
// manager must be a member of a cluster that has a leader (quorum); a
// worker must have its task session with the leader open.
func (n *Node) Ready() error {
	n.mu.Lock()
	member, mgr, locked, run := n.member, n.mgr, n.locked, n.agent
	n.mu.Unlock()
	switch {
	case member == nil:
		return errors.New("not in a cluster: run 'swarmctl init' or 'swarmctl join'")
	case locked:
		return errors.New("this manager is locked (autolock): run 'swarmctl swarm unlock'")
	case mgr != nil:
		if _, addr := mgr.Raft().Leader(); addr == "" {
			return errors.New("no Raft leader: the cluster has lost quorum or is electing one")
		}
		return nil
	case member.manager():
		return errors.New("the manager is not running")
	case run == nil || !run.agent.SessionOpen():
		return errors.New("no task session with the leader")
	}
	return nil
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(metrics.Namespace+"_"+name, help, labels, nil)
}

var (
	descReady         = desc("node_ready", "1 when /readyz answers ready: a manager knows a leader, a worker has its task session open.")
	descStoreObjects  = desc("store_objects", "Objects in this manager's replica of the store, by kind.", "kind")
	descStoreIndex    = desc("store_index", "Raft index of the last change applied to this manager's store.")
	descTasks         = desc("tasks", "Tasks in this manager's replica of the store, by observed state.", "state")
	descPending       = desc("scheduler_pending_tasks", "Tasks that should run but wait for a node, by the scheduler's reason (numbers in it replaced by N).", "reason")
	descNodes         = desc("nodes", "Nodes of the cluster by status, availability and role, from this manager's store.", "status", "availability", "role")
	descLeader        = desc("manager_leader", "1 when this manager leads (leader work running), else 0.")
	descDispActive    = desc("dispatcher_active", "1 when this manager's dispatcher serves the term (it leads).")
	descDispSessions  = desc("dispatcher_sessions", "Open task Session streams from agents (the leader's dispatcher).")
	descDispTracked   = desc("dispatcher_nodes_tracked", "Nodes whose heartbeats the leader's dispatcher is watching.")
	descRaftState     = desc("raft_node_state", "1 for this replica's current Raft state.", "state")
	descRaftTerm      = desc("raft_node_term", "This replica's current Raft term.")
	descRaftLast      = desc("raft_node_last_index", "Last index in this replica's Raft log.")
	descRaftCommit    = desc("raft_node_commit_index", "This replica's Raft commit index.")
	descRaftApplied   = desc("raft_node_applied_index", "Last Raft index applied to this replica's store.")
	descRaftContact   = desc("raft_node_last_contact_seconds", "Time since this follower last heard from the leader; 0 on the leader, -1 when never.")
	descRaftChanges   = desc("raft_node_leader_changes_total", "New leaders this replica has seen elected since it started.")
	descRaftHasLeader = desc("raft_node_has_leader", "1 when this replica knows a leader.")
	descSession       = desc("agent_session_open", "1 when this node's agent has its task session with the leader open.")
	descMeshListeners = desc("mesh_listeners", "Published ports the routing mesh has bound on this node.")
	descMeshForwarded = desc("mesh_connections_total", "TCP connections and UDP flows the routing mesh forwarded to a backend, by path: userspace (the proxy) or kernel (nftables DNAT, TCP; on the kernel path only).", "path")
	descMeshRefused   = desc("mesh_refused_total", "TCP connections the routing mesh refused: no backend listed or none could be dialed.")
	descMeshDropped   = desc("mesh_udp_dropped_total", "UDP datagrams the routing mesh dropped for lack of a usable backend.")
	descMeshActive    = desc("mesh_active_connections", "Open proxied TCP connections and live UDP flows per backend address.", "backend")
	descPortConns     = desc("mesh_port_connections_total", "TCP connections and UDP flows the routing mesh forwarded, per published port and path: userspace (the proxy) or kernel (nftables DNAT, TCP ports on the kernel path only).", "protocol", "port", "service", "path")
	descPortRefused   = desc("mesh_port_refused_total", "TCP connections the routing mesh refused (no usable backend), per published port.", "protocol", "port", "service")
	descPortDropped   = desc("mesh_port_udp_dropped_total", "UDP datagrams the routing mesh dropped (no usable backend), per published port.", "protocol", "port", "service")
	descPortBytes     = desc("mesh_port_bytes_total", "Bytes the userspace routing mesh copied per published port: direction in (client to task) or out.", "protocol", "port", "service", "direction")
	descProxyConns    = desc("proxy_connections_total", "Connections the service proxy (data plane) forwarded, by service ID.", "service_id")
	descProxyActive   = desc("proxy_active_connections", "Open connections through the service proxy, by service ID.", "service_id")
	descProxyBytes    = desc("proxy_bytes_total", "Bytes the service proxy copied (both directions), by service ID.", "service_id")
	descProxyErrors   = desc("proxy_errors_total", "Connections the service proxy reset (no backend, none answered), by service ID.", "service_id")
)

// nodeCollector reads the node's current manager and agent at scrape
// time. Nothing is counted on hot paths: the figures are the store's, the
// Raft library's and the components' own.
type nodeCollector struct{ n *Node }

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descReady, descStoreObjects, descStoreIndex, descTasks, descPending, descNodes, descLeader,
		descDispActive, descDispSessions, descDispTracked, descRaftState, descRaftTerm, descRaftLast,
		descRaftCommit, descRaftApplied, descRaftContact, descRaftChanges, descRaftHasLeader, descSession,
		descMeshListeners, descMeshForwarded, descMeshRefused, descMeshDropped, descMeshActive,
		descPortConns, descPortRefused, descPortDropped, descPortBytes,
		descProxyConns, descProxyActive, descProxyBytes, descProxyErrors,
	} {
		ch <- d
	}
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	ch <- gauge(descReady, b2f(n.Ready() == nil))
	n.mu.Lock()
	mgr, run := n.mgr, n.agent
	n.mu.Unlock()
	if mgr != nil {
		collectManager(ch, mgr)
	}
	if run != nil {
		collectAgent(ch, run)
	}
}

// maxPendingReasons bounds the reason label's values; the rest add up
// under "other".
const maxPendingReasons = 20

func collectManager(ch chan<- prometheus.Metric, mgr *manager.Manager) {
	rs := mgr.Raft().Stats()
	for _, st := range []string{"Follower", "Candidate", "Leader", "Shutdown"} {
		ch <- gauge(descRaftState, b2f(rs.State == st), strings.ToLower(st))
	}
	ch <- gauge(descRaftTerm, float64(rs.Term))
	ch <- gauge(descRaftLast, float64(rs.LastIndex))
	ch <- gauge(descRaftCommit, float64(rs.CommitIndex))
	ch <- gauge(descRaftApplied, float64(rs.AppliedIndex))
	contact := -1.0
	if rs.LastContact >= 0 {
		contact = rs.LastContact.Seconds()
	}
	ch <- gauge(descRaftContact, contact)
	ch <- counter(descRaftChanges, float64(rs.LeaderChanges))
	ch <- gauge(descRaftHasLeader, b2f(rs.HasLeader))
	leader, _ := mgr.Raft().Leadership()
	ch <- gauge(descLeader, b2f(leader))

	ds := mgr.DispatcherStats()
	ch <- gauge(descDispActive, b2f(ds.Active))
	ch <- gauge(descDispSessions, float64(ds.Sessions))
	ch <- gauge(descDispTracked, float64(ds.Tracked))

	type nodeKey struct{ status, avail, role string }
	nodes := map[nodeKey]int{}
	tasks := map[swarmpb.TaskState]int{}
	pending := map[string]int{}
	census := mgr.Store().Census(func(nd *swarmpb.Node) {
		nodes[nodeKey{enumName(nd.GetStatus().String(), "NODE_STATUS_"),
			enumName(nd.GetSpec().GetAvailability().String(), "NODE_AVAILABILITY_"),
			enumName(nd.GetRole().String(), "NODE_ROLE_")}]++
	}, func(t *swarmpb.Task) {
		st := t.GetStatus().GetState()
		tasks[st]++
		if st <= swarmpb.TaskState_TASK_STATE_PENDING && t.GetDesiredState() == swarmpb.TaskState_TASK_STATE_RUNNING {
			pending[t.GetSchedulingMessage()]++
		}
	})
	ch <- gauge(descStoreIndex, float64(census.Index))
	for kind, v := range census.Objects {
		ch <- gauge(descStoreObjects, float64(v), kind)
	}
	// Every state is reported, 0 included, so a series does not vanish
	// when its last task leaves it.
	for v, name := range swarmpb.TaskState_name {
		ch <- gauge(descTasks, float64(tasks[swarmpb.TaskState(v)]), enumName(name, "TASK_STATE_"))
	}
	for k, v := range nodes {
		ch <- gauge(descNodes, float64(v), k.status, k.avail, k.role)
	}
	for reason, v := range boundReasons(pending) {
		ch <- gauge(descPending, float64(v), reason)
	}
}

func collectAgent(ch chan<- prometheus.Metric, run *agentRun) {
	st := run.agent.Stats()
	ch <- gauge(descSession, b2f(st.SessionOpen))
	if st.Mesh != nil {
		collectMesh(ch, st.Mesh)
	}
	for svc, s := range st.Services {
		ch <- counter(descProxyConns, float64(s.Connections), svc)
		ch <- gauge(descProxyActive, float64(s.Active), svc)
		ch <- counter(descProxyBytes, float64(s.Bytes), svc)
		ch <- counter(descProxyErrors, float64(s.Errors), svc)
	}
}

// collectMesh reports the routing mesh's counters. Connections are
// counted by path: the userspace proxy's always, the kernel's (TCP only)
// when the mesh is on the kernel path, beside them with path="kernel".
func collectMesh(ch chan<- prometheus.Metric, m *mesh.Stats) {
	ch <- gauge(descMeshListeners, float64(m.Listeners))
	ch <- counter(descMeshForwarded, float64(m.Forwarded), mesh.PathUserspace)
	if m.Kernel {
		ch <- counter(descMeshForwarded, float64(m.KernelForwarded), mesh.PathKernel)
	}
	ch <- counter(descMeshRefused, float64(m.Refused))
	ch <- counter(descMeshDropped, float64(m.Dropped))
	for backend, v := range m.Active {
		ch <- gauge(descMeshActive, float64(v), backend)
	}
	for _, p := range m.Ports {
		port := strconv.FormatUint(uint64(p.Port), 10)
		ch <- counter(descPortConns, float64(p.Connections), p.Protocol, port, p.Service, mesh.PathUserspace)
		if m.Kernel && p.Protocol == "tcp" {
			ch <- counter(descPortConns, float64(p.KernelConnections), p.Protocol, port, p.Service, mesh.PathKernel)
		}
		ch <- counter(descPortRefused, float64(p.Refused), p.Protocol, port, p.Service)
		ch <- counter(descPortDropped, float64(p.Dropped), p.Protocol, port, p.Service)
		ch <- counter(descPortBytes, float64(p.BytesIn), p.Protocol, port, p.Service, "in")
		ch <- counter(descPortBytes, float64(p.BytesOut), p.Protocol, port, p.Service, "out")
	}
}

// enumName is a proto enum value's name without its prefix, lower case
// ("TASK_STATE_RUNNING" -> "running").
func enumName(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}

var digits = regexp.MustCompile(`[0-9]+`)

// boundReasons turns the scheduler's messages into label values of
// bounded number: numbers become N (so "3 nodes" and "4 nodes" share a
// series), values are cut at 120 bytes, and beyond maxPendingReasons the
// least frequent are summed under "other".
func boundReasons(pending map[string]int) map[string]int {
	out := map[string]int{}
	for msg, v := range pending {
		r := digits.ReplaceAllString(msg, "N")
		if r == "" {
			r = "not yet scheduled"
		}
		if len(r) > 120 {
			r = strings.ToValidUTF8(r[:120], "")
		}
		out[r] += v
	}
	if len(out) <= maxPendingReasons {
		return out
	}
	type kv struct {
		k string
		v int
	}
	all := make([]kv, 0, len(out))
	for k, v := range out {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Or(b.v-a.v, strings.Compare(a.k, b.k)) })
	bounded := map[string]int{}
	for i, e := range all {
		if i < maxPendingReasons-1 {
			bounded[e.k] = e.v
		} else {
			bounded["other"] += e.v
		}
	}
	return bounded
}
