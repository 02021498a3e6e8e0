package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Start runs a cluster for a program rather than a test (the benchmark
// commands): it creates a temporary directory, starts the managers (the
// first inits, the others join with the manager token) and then the workers,
// JoinParallel at a time, and waits until every node is Ready in the
// leader's store. Members log to LogPath at LogLevel. Workers serve no local
// socket: they join by calling node.Join, which is what the socket's
// Local.Join does. Errors are returned; Close stops everything.
//
// Unlike New, the heartbeat period defaults to the node's own default.
func Start(opts StartOptions) (*Cluster, error) {
	if opts.Managers < 1 && opts.External == nil {
		return nil, errors.New("need at least one manager")
	}
	if opts.JoinParallel <= 0 {
		opts.JoinParallel = 16
	}
	dir, err := os.MkdirTemp("", "rsw-inproc-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts.Options, Dir: dir, baseDir: dir, sockDir: dir, LogPath: filepath.Join(dir, "cluster.log")}
	c.logf, err = os.Create(c.LogPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.log = slog.New(slog.NewTextHandler(c.logf, &slog.HandlerOptions{Level: opts.LogLevel}))
	if err := c.start(opts); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(opts StartOptions) error {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	joinAddr, wtok, managers, err := c.startManagers(ctx, opts)
	if err != nil {
		return err
	}
	workers, err := c.addN("w", opts.Workers, swarmpb.NodeRole_NODE_ROLE_WORKER)
	if err != nil {
		return err
	}
	var joined atomic.Int64
	sem := make(chan struct{}, opts.JoinParallel)
	errc := make(chan error, len(workers))
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			// A loaded machine may cost the cluster its leader while a
			// thousand nodes join; Unavailable (no leader known, try
			// again) is retried, a failed join having left nothing behind.
			b := retry.NewBackoff(100*time.Millisecond, 2*time.Second)
			for {
				_, err := w.Node.Join(ctx, wtok, joinAddr, w.Addr, "")
				if err == nil {
					if opts.Joined != nil {
						opts.Joined(int(joined.Add(1)))
					}
					return
				}
				if !transientJoinError(err) || !b.Wait(ctx) {
					errc <- fmt.Errorf("join %s: %w", w.Name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	return c.waitReadyAtLeast(ctx, managers+opts.Workers)
}

// startManagers starts the managers (the first inits, the others join
// with the manager token), or none for an External cluster; it returns
// the address workers join through, the worker token and the number of
// managers.
func (c *Cluster) startManagers(ctx context.Context, opts StartOptions) (addr, token string, n int, err error) {
	if e := opts.External; e != nil {
		c.external = e
		return e.Addr, e.Token, e.Managers, nil
	}
	managers, err := c.addN("m", opts.Managers, swarmpb.NodeRole_NODE_ROLE_MANAGER)
	if err != nil {
		return "", "", 0, err
	}
	m1 := managers[0]
	if _, err := m1.Node.Init(ctx, m1.Addr, ""); err != nil {
		return "", "", 0, fmt.Errorf("init: %w", err)
	}
	mtok, err := m1.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_MANAGER})
	if err != nil {
		return "", "", 0, fmt.Errorf("manager join token: %w", err)
	}
	for _, m := range managers[1:] {
		if _, err := m.Node.Join(ctx, mtok.Token, m1.Addr, m.Addr, ""); err != nil {
			return "", "", 0, fmt.Errorf("join %s: %w", m.Name, err)
		}
	}
	wtok, err := m1.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		return "", "", 0, fmt.Errorf("worker join token: %w", err)
	}
	return m1.Addr, wtok.Token, opts.Managers, nil
}

// transientJoinError reports a join that failed because the cluster had
// no leader for a moment: Unavailable, FailedPrecondition (not the leader), or leadership lost while the node
// was being registered (whether that write applied is unknown; if it did,
// the node's first registration stays behind, Down, and WaitReady for
// Start tolerates it).
func transientJoinError(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.FailedPrecondition: // no leader, or not this one
		return true
	}
	return strings.Contains(err.Error(), "leadership lost") || strings.Contains(err.Error(), "not the leader")
}

// addN starts n members named prefix1, prefix2, ... that will join as
// role; only managers serve a local socket.
func (c *Cluster) addN(prefix string, n int, role swarmpb.NodeRole) ([]*Member, error) {
	var out []*Member
	for i := 1; i <= n; i++ {
		m, err := c.add(fmt.Sprintf("%s%d", prefix, i), role == swarmpb.NodeRole_NODE_ROLE_MANAGER)
		if err != nil {
			return nil, err
		}
		m.JoinedAs = role
		out = append(out, m)
	}
	return out, nil
}

// Close stops every member (workers first, in parallel, then the managers
// from the last joined) and removes the directory of a cluster from Start.
func (c *Cluster) Close() { c.CloseLog(nil) }

// CloseLog is Close, copying the tail of the cluster log to w first when w
// is not nil and the log is not empty.
func (c *Cluster) CloseLog(w io.Writer) {
	var wg sync.WaitGroup
	for _, m := range c.Workers() {
		wg.Go(m.Stop)
	}
	wg.Wait()
	managers := c.Managers()
	for i := len(managers) - 1; i >= 0; i-- {
		managers[i].Stop()
	}
	if c.logf != nil {
		c.logf.Close()
		if w != nil {
			if b, err := os.ReadFile(c.LogPath); err == nil && len(b) > 0 {
				const max = 8 << 10
				if len(b) > max {
					b = b[len(b)-max:]
				}
				fmt.Fprintf(w, "--- tail of the cluster log ---\n%s--- end ---\n", b)
			}
		}
	}
	if c.Dir != "" {
		os.RemoveAll(c.Dir)
	}
}
