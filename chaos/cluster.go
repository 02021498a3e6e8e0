package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Cluster is a raftswarm cluster whose nodes are hosts of a Net.
type Cluster struct {
	Net      *Net
	Daemons  []*Daemon // managers first
	byName   map[string]*Daemon
	NodeIDs  map[string]string // hostname -> node ID
	Services []*swarmpb.ServiceSpec
	replicas replicaState // tasks.go
	logf     func(string, ...any)
}

// NewCluster creates the network and starts managers+workers daemons
// (not yet in a cluster). dir holds state dirs and logs; sockets go in a
// short directory of their own (unix socket paths are limited to 108
// bytes). Close undoes everything, also after a failed NewCluster.
func NewCluster(ctx context.Context, rng *rand.Rand, bin, dir string, managers, workers int, logf func(string, ...any)) (*Cluster, error) {
	c := &Cluster{byName: map[string]*Daemon{}, NodeIDs: map[string]string{}, logf: logf}
	n, err := NewNet(rng)
	if err != nil {
		return nil, err
	}
	c.Net = n
	sockDir := filepath.Join(dir, "s")
	if err := os.MkdirAll(sockDir, 0o700); err != nil {
		return c, err
	}
	for i := 0; i < managers+workers; i++ {
		name, binary := fmt.Sprintf("m%d", i+1), "managerd"
		if i >= managers {
			name, binary = fmt.Sprintf("w%d", i-managers+1), "workerd"
		}
		h, err := n.AddHost(name)
		if err != nil {
			return c, err
		}
		d := &Daemon{
			Host: h, Binary: filepath.Join(bin, binary), Manager: i < managers,
			StateDir: filepath.Join(dir, name, "state"),
			Socket:   filepath.Join(sockDir, name+".sock"),
			LogPath:  filepath.Join(dir, name+".log"),
		}
		if err := os.MkdirAll(filepath.Dir(d.StateDir), 0o700); err != nil {
			return c, err
		}
		c.Daemons = append(c.Daemons, d)
		c.byName[name] = d
		if err := d.Start(ctx); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Close kills every daemon and removes the network.
func (c *Cluster) Close() error {
	for _, d := range c.Daemons {
		d.Close()
	}
	if c.Net == nil {
		return nil
	}
	return c.Net.Close()
}

// DumpLogs returns the last lines of every daemon's log.
func (c *Cluster) DumpLogs(lines int) string {
	var b strings.Builder
	for _, d := range c.Daemons {
		fmt.Fprintf(&b, "---- %s (%s) %s:\n%s\n", d.Host.Name, d.Addr(), d.LogPath, tail(d.LogPath, lines))
	}
	return b.String()
}

// Managers returns the manager daemons.
func (c *Cluster) Managers() []*Daemon {
	var ms []*Daemon
	for _, d := range c.Daemons {
		if d.Manager {
			ms = append(ms, d)
		}
	}
	return ms
}

// Form inits the first manager, joins the others, waits until the cluster
// is healthy and creates nServices replicated services of two replicas
// each, with a published port (tasks.go), and waits for their tasks.
func (c *Cluster) Form(ctx context.Context, nServices int) error {
	first := c.Daemons[0]
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := first.Local().Init(cctx, &swarmpb.InitRequest{AdvertiseAddr: first.Addr()}); err != nil {
		return fmt.Errorf("init on %s: %w", first.Host.Name, err)
	}
	tokens := map[bool]string{}
	for _, mgr := range []bool{true, false} {
		role := swarmpb.NodeRole_NODE_ROLE_WORKER
		if mgr {
			role = swarmpb.NodeRole_NODE_ROLE_MANAGER
		}
		err := poll(ctx, 30*time.Second, func() error {
			resp, err := first.Control().GetJoinToken(cctx, &swarmpb.GetJoinTokenRequest{Role: role})
			if err != nil {
				return err
			}
			tokens[mgr] = resp.Token
			return nil
		})
		if err != nil {
			return fmt.Errorf("join token: %w", err)
		}
	}
	for _, d := range c.Daemons[1:] {
		err := poll(ctx, 60*time.Second, func() error {
			jctx, cancel := context.WithTimeout(ctx, 40*time.Second)
			defer cancel()
			_, err := d.Local().Join(jctx, &swarmpb.JoinRequest{Token: tokens[d.Manager], RemoteAddr: first.Addr(), AdvertiseAddr: d.Addr()})
			if err != nil && strings.Contains(err.Error(), "already part of a swarm") {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("join %s: %w", d.Host.Name, err)
		}
	}
	if _, err := c.WaitHealthy(ctx, 60*time.Second); err != nil {
		return err
	}
	resp, err := first.Control().ListNodes(ctx, &swarmpb.ListNodesRequest{})
	if err != nil {
		return err
	}
	for _, n := range resp.Nodes {
		c.NodeIDs[n.Node.Description.GetHostname()] = n.Node.Id
	}
	for i := 0; i < nServices; i++ {
		spec := serviceSpec(i, 2)
		if _, err := first.Control().CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: spec}); err != nil {
			return fmt.Errorf("create service %s: %w", spec.Name, err)
		}
		c.Services = append(c.Services, spec)
		c.replicas.n = append(c.replicas.n, spec.Replicas)
	}
	return c.WaitTasksConverged(ctx, 60*time.Second)
}

// Health asks every running, unpaused manager for the node list and
// returns the leader's hostname if all agree on one leader and every node
// is Ready.
func (c *Cluster) Health(ctx context.Context) (string, error) {
	leader := ""
	for _, d := range c.Managers() {
		if !d.Running() || d.Paused() {
			return "", fmt.Errorf("%s is not running", d.Host.Name)
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := d.Control().ListNodes(cctx, &swarmpb.ListNodesRequest{})
		cancel()
		if err != nil {
			return "", fmt.Errorf("node ls on %s: %w", d.Host.Name, err)
		}
		var leaders, notReady []string
		for _, n := range resp.Nodes {
			host := n.Node.Description.GetHostname()
			if n.ManagerStatus == "Leader" {
				leaders = append(leaders, host)
			}
			if n.Node.Status != swarmpb.NodeStatus_NODE_STATUS_READY {
				notReady = append(notReady, host+"="+n.Node.Status.String())
			}
			if n.Node.Role == swarmpb.NodeRole_NODE_ROLE_MANAGER && n.ManagerStatus != "Leader" && n.ManagerStatus != "Reachable" {
				notReady = append(notReady, host+" manager status "+n.ManagerStatus)
			}
		}
		switch {
		case len(resp.Nodes) != len(c.Daemons):
			return "", fmt.Errorf("%s lists %d nodes, want %d", d.Host.Name, len(resp.Nodes), len(c.Daemons))
		case len(leaders) != 1:
			return "", fmt.Errorf("%s sees leaders %v, want exactly one", d.Host.Name, leaders)
		case len(notReady) > 0:
			sort.Strings(notReady)
			return "", fmt.Errorf("%s sees %v not ready", d.Host.Name, notReady)
		case leader != "" && leaders[0] != leader:
			return "", fmt.Errorf("managers disagree on the leader: %s and %s", leader, leaders[0])
		}
		leader = leaders[0]
	}
	return leader, nil
}

// WaitHealthy polls Health until it passes and returns the leader.
func (c *Cluster) WaitHealthy(ctx context.Context, timeout time.Duration) (string, error) {
	var leader, last string
	start := time.Now()
	err := poll(ctx, timeout, func() error {
		l, err := c.Health(ctx)
		leader = l
		// Each new reason for not being healthy yet is logged once: the
		// sequence shows where convergence time goes.
		if err != nil && err.Error() != last && c.logf != nil {
			last = err.Error()
			c.logf("  +%v not healthy: %s", time.Since(start).Round(time.Millisecond), firstLine(last))
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("cluster not healthy: %w", err)
	}
	return leader, nil
}

// Leader asks the running managers who leads, without requiring health.
func (c *Cluster) Leader(ctx context.Context) (*Daemon, error) {
	var errs []error
	for _, d := range c.Managers() {
		if !d.Running() || d.Paused() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := d.Control().ListNodes(cctx, &swarmpb.ListNodesRequest{})
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range resp.Nodes {
			if n.ManagerStatus == "Leader" {
				return c.byName[n.Node.Description.GetHostname()], nil
			}
		}
	}
	return nil, fmt.Errorf("no leader known: %w", errors.Join(errs...))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
