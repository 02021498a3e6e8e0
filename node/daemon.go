package node

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/agent"
	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
)

// hiddenEngineFlag selects the task engine: docker, or fake for tests.
const hiddenEngineFlag = "engine"

// usageWithoutHidden prints the flags as flag.PrintDefaults does, without
// the test-only ones.
func usageWithoutHidden(fs *flag.FlagSet, name string, w io.Writer) {
	shown := flag.NewFlagSet(name, flag.ContinueOnError)
	shown.SetOutput(w)
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != hiddenEngineFlag {
			shown.Var(f.Value, f.Name, f.Usage)
			shown.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	fmt.Fprintf(w, "Usage of %s:\n", name)
	shown.PrintDefaults()
}

// Main is the whole of managerd and workerd: flags, config, run until a
// signal. The two binaries differ only in name; the role comes from init
// or the join token, and changes live with promote and demote.
func Main(name string, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	var level, logFormat string
	var heartbeat time.Duration
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/raftswarm", "directory holding this node's certificates, membership and Raft state")
	fs.StringVar(&cfg.SocketPath, "socket", "/var/run/raftswarm.sock", "local control socket swarmctl talks to")
	fs.StringVar(&cfg.Hostname, "hostname", "", "node name shown in node ls (default: the host's name)")
	fs.StringVar(&cfg.DockerHost, "docker-host", "", "Docker Engine URL for running tasks (default: $DOCKER_HOST or the local socket)")
	fs.StringVar(&cfg.IngressAddr, "ingress-addr", "", "address published ports bind on (default: all addresses)")
	fs.StringVar(&cfg.MeshPath, "mesh-path", agent.MeshPathAuto, "how the routing mesh forwards published TCP ports: auto (in the kernel with nftables where the daemon may, else its userspace proxy; node inspect says which and why) or userspace")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	fs.IntVar(&cfg.DataPort, "data-port", DefaultDataPort, "TCP port, on the advertised address, of the data path between nodes (service-to-service traffic over mutual TLS); 0 disables it")
	fs.StringVar(&cfg.DashboardAddr, "dashboard-addr", "", "serve the read-only web dashboard on HOST:PORT while this node is a manager; HTTPS with a login token ('swarmctl dashboard-token') unless loopback (default: off)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "HOST:PORT serving Prometheus metrics (/metrics), /healthz and /readyz over HTTP; off if empty")
	fs.BoolVar(&cfg.Debug, "debug", false, "also serve net/http/pprof under /debug/pprof/ on --metrics-addr")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.DurationVar(&heartbeat, "heartbeat-period", 0, "agents' base heartbeat period; a node is Down when a heartbeat is min(2 periods, 2s) late (default 2s)")
	fs.DurationVar(&cfg.PullStallTimeout, "image-pull-stall-timeout", 0, "fail a task whose image pull makes no progress for this long (default 1m0s)")
	// --engine fake runs tasks in the in-memory fake engine: for tests
	// (the chaos bed) only, hence hidden from -help.
	var engine string
	fs.StringVar(&engine, hiddenEngineFlag, "docker", "")
	fs.Usage = func() { usageWithoutHidden(fs, name, stderr) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "Error: %s takes no arguments, got %q\n", name, fs.Args())
		return 2
	}
	if cfg.DataPort < 0 || cfg.DataPort > 65535 {
		fmt.Fprintf(stderr, "Error: invalid --data-port %d: use a port from 1 to 65535, or 0 to disable the data path\n", cfg.DataPort)
		return 2
	}
	if err := agent.ValidMeshPath(cfg.MeshPath); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 2
	}
	if cfg.PullStallTimeout < 0 {
		fmt.Fprintf(stderr, "Error: invalid --image-pull-stall-timeout %s: use a positive duration such as 60s\n", cfg.PullStallTimeout)
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		fmt.Fprintf(stderr, "Error: invalid --log-level %q: use debug, info, warn or error\n", level)
		return 2
	}
	var handler slog.Handler
	switch logFormat {
	case "text":
		handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv})
	case "json":
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv})
	default:
		fmt.Fprintf(stderr, "Error: invalid --log-format %q: use text or json\n", logFormat)
		return 2
	}
	if cfg.Debug && cfg.MetricsAddr == "" {
		fmt.Fprintf(stderr, "Error: --debug serves pprof on the metrics address: set --metrics-addr too\n")
		return 2
	}
	cfg.Logger = slog.New(handler).With("daemon", name)
	cfg.HeartbeatPeriod = heartbeat
	switch engine {
	case "docker":
	case "fake":
		cfg.Executor = func(nodeID string) (exec.Executor, error) { return fake.New(nodeID), nil }
		cfg.Logger.Warn("tasks run in the in-memory fake engine (--engine fake, for tests only): no container is started")
	default:
		fmt.Fprintf(stderr, "Error: invalid --engine %q: use docker\n", engine)
		return 2
	}

	n, err := New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	cfg.Logger.Info("daemon ready", "socket", cfg.SocketPath, "state_dir", cfg.StateDir)
	<-ctx.Done()
	cfg.Logger.Info("shutting down")
	n.Stop()
	return 0
}
