package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

const (
	// DefaultHost is the daemon socket used when neither -H nor SWARMCTL_HOST is set.
	DefaultHost = "unix:///var/run/raftswarm.sock"
	// HostEnv names the environment variable that overrides the default host.
	HostEnv = "SWARMCTL_HOST"

	defaultRPCTimeout = 15 * time.Second
	lifecycleTimeout  = 60 * time.Second
	defaultPoll       = 300 * time.Millisecond
)

// options are the knobs tests turn; Main uses the defaults.
type options struct {
	pollInterval time.Duration
	rpcTimeout   time.Duration
	now          func() time.Time
	terminal     *bool        // nil: detect from stdout
	stdin        io.Reader    // nil: os.Stdin
	builder      imageBuilder // nil: the node's Docker Engine (stack deploy's build:)
}

// app is the state shared by the commands of one invocation.
type app struct {
	opts   options
	stdout io.Writer
	stderr io.Writer
	host   string

	mu       sync.Mutex
	conn     *grpc.ClientConn
	sockPath string
	dialErr  error // the last error dialing the socket, if any
}

// Main runs swarmctl with args (without the program name) and returns the
// process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	return run(options{}, args, stdout, stderr)
}

func run(opts options, args []string, stdout, stderr io.Writer) int {
	if opts.pollInterval <= 0 {
		opts.pollInterval = defaultPoll
	}
	if opts.rpcTimeout <= 0 {
		opts.rpcTimeout = defaultRPCTimeout
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	a := &app{opts: opts, stdout: stdout, stderr: stderr}
	defer a.close()

	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		msg := strings.TrimSpace(err.Error())
		msg = escapeText(strings.ReplaceAll(msg, "\n", " "))
		fmt.Fprintf(stderr, "Error: %s\n", msg)
		return 1
	}
	return 0
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "swarmctl",
		Short:         "Control a raftswarm cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          unknownSubcommand,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	host := os.Getenv(HostEnv)
	if host == "" {
		host = DefaultHost
	}
	root.PersistentFlags().StringVarP(&a.host, "host", "H", host,
		"daemon socket to connect to (env "+HostEnv+")")

	root.AddCommand(
		a.initCommand(),
		a.joinCommand(),
		a.joinTokenCommand(),
		a.leaveCommand(),
		a.swarmCommand(),
		a.nodeCommand(),
		a.serviceCommand(),
		a.networkCommand(),
		a.secretCommand(),
		a.configCommand(),
		a.stackCommand(),
		a.eventsCommand(),
	)
	return root
}

// noArgs rejects positional arguments with a one-line error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%q accepts no arguments", cmd.CommandPath())
	}
	return nil
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%q requires exactly %d argument(s) (%s), got %d", cmd.CommandPath(), n, what, len(args))
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return fmt.Errorf("%q requires at least %d argument(s) (%s)", cmd.CommandPath(), n, what)
		}
		return nil
	}
}

// unknownSubcommand rejects arguments to a command that only holds subcommands.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}

// groupCommand returns a command that only holds subcommands.
func groupCommand(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  unknownSubcommand,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
}

// socketPath turns the --host value into a filesystem path.
func socketPath(host string) (string, error) {
	switch {
	case strings.HasPrefix(host, "unix://"):
		p := strings.TrimPrefix(host, "unix://")
		if p == "" {
			return "", fmt.Errorf("invalid host %q: missing socket path", host)
		}
		return p, nil
	case strings.HasPrefix(host, "/"):
		return host, nil
	case strings.Contains(host, "://"):
		return "", fmt.Errorf("invalid host %q: only unix:// sockets are supported", host)
	default:
		return "", fmt.Errorf("invalid host %q: expected unix:///path/to/socket", host)
	}
}

func (a *app) clientConn() (*grpc.ClientConn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		return a.conn, nil
	}
	path, err := socketPath(a.host)
	if err != nil {
		return nil, err
	}
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		a.mu.Lock()
		a.dialErr = err
		a.mu.Unlock()
		return c, err
	}
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dialer))
	if err != nil {
		return nil, fmt.Errorf("cannot reach the raftswarm daemon at %s: %v", path, err)
	}
	a.conn = conn
	a.sockPath = path
	return conn, nil
}

func (a *app) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		_ = a.conn.Close()
		a.conn = nil
	}
}

func (a *app) control() (swarmpb.ControlClient, error) {
	conn, err := a.clientConn()
	if err != nil {
		return nil, err
	}
	return swarmpb.NewControlClient(conn), nil
}

func (a *app) local() (swarmpb.LocalClient, error) {
	conn, err := a.clientConn()
	if err != nil {
		return nil, err
	}
	return swarmpb.NewLocalClient(conn), nil
}

// call runs one RPC under a deadline and turns its error into a user-facing one.
func (a *app) call(timeout time.Duration, fn func(ctx context.Context) error) error {
	if timeout <= 0 {
		timeout = a.opts.rpcTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := fn(ctx)
	if err == nil {
		return nil
	}
	return a.rpcError(ctx, timeout, err)
}

func (a *app) rpcError(ctx context.Context, timeout time.Duration, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	a.mu.Lock()
	dialErr, path := a.dialErr, a.sockPath
	a.mu.Unlock()
	switch {
	case st.Code() == codes.Unavailable && dialErr != nil:
		return fmt.Errorf("cannot reach the raftswarm daemon at %s: is managerd or workerd running? (%v)", path, dialErr)
	case st.Code() == codes.DeadlineExceeded && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("the raftswarm daemon at %s did not answer within %s", path, timeout)
	}
	return errors.New(st.Message())
}
