package stack

import (
	"fmt"
	"regexp"

	"google.golang.org/protobuf/proto"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// NamespaceLabel marks every object a stack creates with the stack's name,
// as Docker's stack deploy does.
const NamespaceLabel = "com.docker.stack.namespace"

// MaxNameLen bounds a stack name so that STACK_SERVICE stays a valid
// service name (63 characters) for a service name of a few characters.
const MaxNameLen = 48

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// ValidateName checks a stack name: lower-case letters, digits, '-' and
// '_', starting with a letter or digit (Compose's project name rule).
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("stack name is required")
	}
	if len(name) > MaxNameLen || !nameRE.MatchString(name) {
		return fmt.Errorf("invalid stack name %q: use 1-%d lower-case letters, digits, '-' or '_', starting with a letter or digit", name, MaxNameLen)
	}
	return nil
}

// Plan is what deploying a Compose project as a stack creates: every name
// is the cluster-wide one (STACK_KEY, or the name of an external object).
type Plan struct {
	Stack    string
	Networks []Network
	Secrets  []Data
	Configs  []Data
	Volumes  []Volume
	// Services are in dependency order: a service comes after every
	// service it depends on (ties by name).
	Services []Service
	// Warnings name, one per line, what the cluster does not support.
	Warnings []string
}

// Network is a network of the stack, or an external one that must exist.
type Network struct {
	Key      string // the name in the Compose file
	Name     string
	External bool
	Spec     *swarmpb.NetworkSpec // nil when external
}

// Data is a secret or config of the stack, or an external one that must
// exist.
type Data struct {
	Key      string
	Name     string
	External bool
	Labels   map[string]string
	Content  []byte // nil when external
}

// Volume is a named volume of the stack (created on each node that runs a
// task using it) or an external one.
type Volume struct {
	Key      string
	Name     string
	External bool
	Driver   string
	Options  map[string]string
	Labels   map[string]string
}

// Condition is what a service waits for in a dependency before it is
// created or updated.
type Condition string

// The depends_on conditions.
const (
	ServiceStarted               Condition = "service_started"
	ServiceHealthy               Condition = "service_healthy"
	ServiceCompletedSuccessfully Condition = "service_completed_successfully"
)

// Dependency is one depends_on entry.
type Dependency struct {
	Service   string // the full service name (STACK_KEY)
	Key       string
	Condition Condition
}

// Build is a service's build: section; the image is built on the engine of
// the node the command talks to, and tagged Tag.
type Build struct {
	Context    string // absolute directory
	Dockerfile string // relative to Context; empty: Dockerfile
	Args       map[string]*string
	Target     string
	Labels     map[string]string
	Tag        string
}

// Service is one service of the stack.
type Service struct {
	Key       string // the short name, also its alias on every network
	Spec      *swarmpb.ServiceSpec
	DependsOn []Dependency
	Build     *Build // nil: the image is used as it is
}

// Name is the service's cluster name.
func (s Service) Name() string { return s.Spec.GetName() }

// SpecChanged reports whether deploying want over a service whose stored
// spec is stored changes anything, ignoring what the managers and nodes
// fill in: the image ID, secret and config IDs and versions, and the
// update settings' two spellings (enum or text).
func SpecChanged(stored, want *swarmpb.ServiceSpec) bool {
	return !proto.Equal(comparable(stored), comparable(want))
}

func comparable(s *swarmpb.ServiceSpec) *swarmpb.ServiceSpec {
	c := proto.Clone(s).(*swarmpb.ServiceSpec)
	if ct := c.GetContainer(); ct != nil {
		ct.ImageId = ""
		for _, r := range ct.Secrets {
			r.SecretId, r.Version = "", 0
		}
		for _, r := range ct.Configs {
			r.ConfigId, r.Version = "", 0
		}
	}
	for _, u := range []*swarmpb.UpdateConfig{c.GetUpdate(), c.GetRollback()} {
		if u == nil {
			continue
		}
		u.OnFailure, u.UpdateOrder = u.FailureActionValue(), u.OrderValue()
		u.FailureAction, u.Order = "", ""
	}
	return c
}
