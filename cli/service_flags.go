package cli

import (
	"fmt"
	"math"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// updateFlags are the --update-* or --rollback-* flags.
type updateFlags struct {
	prefix        string
	parallelism   int64
	delay         string
	failureAction string
	monitor       string
	ratio         float64
	order         string
}

// serviceFlags are the flags shared by `service create` and `service update`.
// They are applied to a spec only when set on the command line; create starts
// from defaultSpec, whose values match the flags' defaults.
type serviceFlags struct {
	replicas       int64
	maxPerNode     int64
	reserveCPU     string
	reserveMemory  string
	limitCPU       string
	limitMemory    string
	restartCond    string
	restartDelay   string
	restartMax     int64
	restartWindow  string
	workdir        string
	user           string
	hostname       string
	stopGrace      string
	entrypoint     []string
	healthCmd      string
	healthInterval string
	healthTimeout  string
	healthStart    string
	healthRetries  int64
	noHealthcheck  bool
	update         updateFlags
	rollback       updateFlags
	detach         bool
	timeout        time.Duration
}

const defaultWaitTimeout = 3 * time.Minute

func defaultUpdateConfig() *swarmpb.UpdateConfig {
	return &swarmpb.UpdateConfig{
		Parallelism:   1,
		FailureAction: "pause",
		MonitorNs:     int64(5 * time.Second),
		Order:         "stop-first",
	}
}

// defaultSpec is the spec `service create` starts from.
func defaultSpec() *swarmpb.ServiceSpec {
	return &swarmpb.ServiceSpec{
		Container: &swarmpb.ContainerSpec{},
		Mode:      swarmpb.ServiceMode_SERVICE_MODE_REPLICATED,
		Replicas:  1,
		Restart: &swarmpb.RestartPolicy{
			Condition: swarmpb.RestartPolicy_CONDITION_ANY,
			DelayNs:   int64(5 * time.Second),
		},
		Update:   defaultUpdateConfig(),
		Rollback: defaultUpdateConfig(),
	}
}

func (o *serviceFlags) register(f *pflag.FlagSet) {
	f.Int64Var(&o.replicas, "replicas", 1, "number of tasks (replicated mode)")
	f.Int64Var(&o.maxPerNode, "replicas-max-per-node", 0, "maximum number of tasks per node (0 = unlimited)")
	f.StringVar(&o.reserveCPU, "reserve-cpu", "", "reserve CPUs (e.g. 0.5)")
	f.StringVar(&o.reserveMemory, "reserve-memory", "", "reserve memory (e.g. 64MiB)")
	f.StringVar(&o.limitCPU, "limit-cpu", "", "limit CPUs")
	f.StringVar(&o.limitMemory, "limit-memory", "", "limit memory")
	f.StringVar(&o.restartCond, "restart-condition", "any", "restart when condition is met (none, on-failure, any)")
	f.StringVar(&o.restartDelay, "restart-delay", "5s", "delay between restart attempts")
	f.Int64Var(&o.restartMax, "restart-max-attempts", 0, "maximum number of restarts before giving up (0 = unlimited)")
	f.StringVar(&o.restartWindow, "restart-window", "0s", "window used to evaluate the restart policy")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the container")
	f.StringVarP(&o.user, "user", "u", "", "username or UID")
	f.StringVar(&o.hostname, "hostname", "", "container hostname")
	f.StringVar(&o.stopGrace, "stop-grace-period", "", "time to wait before force killing a container")
	f.StringArrayVar(&o.entrypoint, "entrypoint", nil, "override the image's entrypoint (repeat for each word)")
	f.StringVar(&o.healthCmd, "health-cmd", "", "command to run to check health")
	f.StringVar(&o.healthInterval, "health-interval", "", "time between running the check")
	f.StringVar(&o.healthTimeout, "health-timeout", "", "maximum time to allow one check to run")
	f.StringVar(&o.healthStart, "health-start-period", "", "start period for the container to initialize")
	f.Int64Var(&o.healthRetries, "health-retries", 0, "consecutive failures needed to report unhealthy")
	f.BoolVar(&o.noHealthcheck, "no-healthcheck", false, "disable any container-specified healthcheck")
	o.update.register(f, "update")
	o.rollback.register(f, "rollback")
	f.BoolVarP(&o.detach, "detach", "d", false, "exit immediately instead of waiting for the service to converge")
	f.DurationVar(&o.timeout, "timeout", defaultWaitTimeout, "how long to wait for the service to converge")
}

func (u *updateFlags) register(f *pflag.FlagSet, prefix string) {
	u.prefix = prefix
	f.Int64Var(&u.parallelism, prefix+"-parallelism", 1, "maximum number of tasks updated simultaneously (0 = all at once)")
	f.StringVar(&u.delay, prefix+"-delay", "0s", "delay between updates")
	f.StringVar(&u.failureAction, prefix+"-failure-action", "pause", "action on failure (pause, continue, rollback)")
	f.StringVar(&u.monitor, prefix+"-monitor", "5s", "duration after each task update to monitor for failure")
	f.Float64Var(&u.ratio, prefix+"-max-failure-ratio", 0, "failure rate to tolerate during an update (0-1)")
	f.StringVar(&u.order, prefix+"-order", "stop-first", "update order (start-first, stop-first)")
}

func (u *updateFlags) apply(cfg **swarmpb.UpdateConfig, changed func(string) bool) error {
	name := func(s string) string { return u.prefix + "-" + s }
	set := false
	for _, n := range []string{"parallelism", "delay", "failure-action", "monitor", "max-failure-ratio", "order"} {
		set = set || changed(name(n))
	}
	if !set {
		return nil
	}
	if *cfg == nil {
		*cfg = defaultUpdateConfig()
	}
	c := *cfg
	var err error
	if changed(name("parallelism")) {
		if u.parallelism < 0 {
			return fmt.Errorf("invalid --%s %d: must not be negative", name("parallelism"), u.parallelism)
		}
		c.Parallelism = uint64(u.parallelism)
	}
	if changed(name("delay")) {
		if c.DelayNs, err = parseDuration("--"+name("delay"), u.delay); err != nil {
			return err
		}
	}
	if changed(name("failure-action")) {
		c.FailureAction = u.failureAction
	}
	if changed(name("monitor")) {
		if c.MonitorNs, err = parseDuration("--"+name("monitor"), u.monitor); err != nil {
			return err
		}
	}
	if changed(name("max-failure-ratio")) {
		c.MaxFailureRatio = float32(u.ratio)
	}
	if changed(name("order")) {
		c.Order = u.order
	}
	return nil
}

// apply sets the changed flags on spec. spec.Mode must already be final.
// It only converts: a negative count cannot be put in an unsigned field, so
// it is refused here; every other rule is spec.ValidateServiceSpec's.
func (o *serviceFlags) apply(spec *swarmpb.ServiceSpec, changed func(string) bool) error {
	var err error
	if spec.Container == nil {
		spec.Container = &swarmpb.ContainerSpec{}
	}
	c := spec.Container
	if changed("replicas") {
		if spec.Mode == swarmpb.ServiceMode_SERVICE_MODE_GLOBAL {
			return fmt.Errorf("--replicas can only be used with replicated mode")
		}
		if o.replicas < 0 {
			return fmt.Errorf("invalid --replicas %d: must not be negative", o.replicas)
		}
		spec.Replicas = uint64(o.replicas)
	}
	if changed("replicas-max-per-node") {
		if o.maxPerNode < 0 {
			return fmt.Errorf("invalid --replicas-max-per-node %d: must not be negative", o.maxPerNode)
		}
		if spec.Placement == nil {
			spec.Placement = &swarmpb.Placement{}
		}
		spec.Placement.MaxReplicasPerNode = uint64(o.maxPerNode)
	}
	resources := func() *swarmpb.ResourceRequirements {
		if spec.Resources == nil {
			spec.Resources = &swarmpb.ResourceRequirements{}
		}
		return spec.Resources
	}
	reservations := func() *swarmpb.Resources {
		r := resources()
		if r.Reservations == nil {
			r.Reservations = &swarmpb.Resources{}
		}
		return r.Reservations
	}
	limits := func() *swarmpb.Resources {
		r := resources()
		if r.Limits == nil {
			r.Limits = &swarmpb.Resources{}
		}
		return r.Limits
	}
	if changed("reserve-cpu") {
		if reservations().NanoCpus, err = parseCPU("--reserve-cpu", o.reserveCPU); err != nil {
			return err
		}
	}
	if changed("reserve-memory") {
		if reservations().MemoryBytes, err = parseMemory("--reserve-memory", o.reserveMemory); err != nil {
			return err
		}
	}
	if changed("limit-cpu") {
		if limits().NanoCpus, err = parseCPU("--limit-cpu", o.limitCPU); err != nil {
			return err
		}
	}
	if changed("limit-memory") {
		if limits().MemoryBytes, err = parseMemory("--limit-memory", o.limitMemory); err != nil {
			return err
		}
	}
	if err := o.applyRestart(spec, changed); err != nil {
		return err
	}
	if changed("workdir") {
		c.Dir = o.workdir
	}
	if changed("user") {
		c.User = o.user
	}
	if changed("hostname") {
		c.Hostname = o.hostname
	}
	if changed("entrypoint") {
		c.Command = append([]string(nil), o.entrypoint...)
	}
	if changed("stop-grace-period") {
		if c.StopGracePeriodNs, err = parseDuration("--stop-grace-period", o.stopGrace); err != nil {
			return err
		}
	}
	if err := o.applyHealth(c, changed); err != nil {
		return err
	}
	if err := o.update.apply(&spec.Update, changed); err != nil {
		return err
	}
	if err := o.rollback.apply(&spec.Rollback, changed); err != nil {
		return err
	}
	if changed("timeout") && o.timeout <= 0 {
		return fmt.Errorf("invalid --timeout %s: must be positive", o.timeout)
	}
	return nil
}

func (o *serviceFlags) applyRestart(spec *swarmpb.ServiceSpec, changed func(string) bool) error {
	if !changed("restart-condition") && !changed("restart-delay") && !changed("restart-max-attempts") && !changed("restart-window") {
		return nil
	}
	if spec.Restart == nil {
		spec.Restart = defaultSpec().Restart
	}
	r := spec.Restart
	var err error
	if changed("restart-condition") {
		if r.Condition, err = parseRestartCondition(o.restartCond); err != nil {
			return err
		}
	}
	if changed("restart-delay") {
		if r.DelayNs, err = parseDuration("--restart-delay", o.restartDelay); err != nil {
			return err
		}
	}
	if changed("restart-max-attempts") {
		if o.restartMax < 0 {
			return fmt.Errorf("invalid --restart-max-attempts %d: must not be negative", o.restartMax)
		}
		r.MaxAttempts = uint64(o.restartMax)
	}
	if changed("restart-window") {
		if r.WindowNs, err = parseDuration("--restart-window", o.restartWindow); err != nil {
			return err
		}
	}
	return nil
}

func (o *serviceFlags) applyHealth(c *swarmpb.ContainerSpec, changed func(string) bool) error {
	others := []string{"health-cmd", "health-interval", "health-timeout", "health-start-period", "health-retries"}
	anyOther := false
	for _, n := range others {
		anyOther = anyOther || changed(n)
	}
	if changed("no-healthcheck") && o.noHealthcheck {
		if anyOther {
			return fmt.Errorf("--no-healthcheck conflicts with --health-* options")
		}
		c.Healthcheck = &swarmpb.HealthConfig{Test: []string{"NONE"}}
		return nil
	}
	if !anyOther {
		return nil
	}
	hc := &swarmpb.HealthConfig{}
	if c.Healthcheck != nil && !(len(c.Healthcheck.Test) == 1 && c.Healthcheck.Test[0] == "NONE") {
		hc = proto.Clone(c.Healthcheck).(*swarmpb.HealthConfig)
	}
	var err error
	if changed("health-cmd") {
		hc.Test = nil
		if o.healthCmd != "" {
			hc.Test = []string{"CMD-SHELL", o.healthCmd}
		}
	}
	if changed("health-interval") {
		if hc.IntervalNs, err = parseDuration("--health-interval", o.healthInterval); err != nil {
			return err
		}
	}
	if changed("health-timeout") {
		if hc.TimeoutNs, err = parseDuration("--health-timeout", o.healthTimeout); err != nil {
			return err
		}
	}
	if changed("health-start-period") {
		if hc.StartPeriodNs, err = parseDuration("--health-start-period", o.healthStart); err != nil {
			return err
		}
	}
	if changed("health-retries") {
		if o.healthRetries < math.MinInt32 || o.healthRetries > math.MaxInt32 {
			return fmt.Errorf("invalid --health-retries %d: out of range", o.healthRetries)
		}
		hc.Retries = int32(o.healthRetries)
	}
	c.Healthcheck = hc
	return nil
}
