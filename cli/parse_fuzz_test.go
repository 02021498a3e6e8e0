package cli

import (
	"strings"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
)

// The flag parsers must never panic, must give one-line errors, and what
// they produce must go through the managers' validation without panicking.

func checkFlagError(t *testing.T, err error) {
	t.Helper()
	if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || len(msg) > 1024 {
		t.Fatalf("error is not one short line (%d bytes): %q", len(msg), msg)
	}
}

// fuzzSpec is a valid spec for parsed values to be placed into.
func fuzzSpec() *swarmpb.ServiceSpec {
	s := defaultSpec()
	s.Name, s.Container.Image = "web", "nginx"
	return s
}

func FuzzParsePublish(f *testing.F) {
	for _, s := range []string{"8080:80", "53:53/udp", "443", "80/tcp", "mode=host,published=9000,target=90,protocol=udp",
		"target=80", "80:70000", ":80", "80:", "/udp", "published=1,published=2,target=3", "a:b/c", "mode=,target=1", "99999999999:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePort("--publish", s)
		if err != nil {
			checkFlagError(t, err)
			return
		}
		sp := fuzzSpec()
		sp.Ports = []*swarmpb.PortConfig{p}
		if err := spec.ValidateServiceSpec(sp, 0); err != nil {
			checkFlagError(t, err)
		}
	})
}

func FuzzParseMount(f *testing.F) {
	for _, s := range []string{"type=bind,source=/data,target=/srv,readonly", "source=vol,target=/v", "type=volume,target=/x,ro=false",
		"type=tmpfs,target=/x", "target", ",,,", "src=/a,dst=b", "READONLY,target=/x", "type=bind,target=/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseMount("--mount", s)
		if err != nil {
			checkFlagError(t, err)
			return
		}
		sp := fuzzSpec()
		sp.Container.Mounts = []*swarmpb.Mount{m}
		if err := spec.ValidateServiceSpec(sp, 0); err != nil {
			checkFlagError(t, err)
		}
	})
}

// FuzzParseConstraint covers --constraint and --placement-pref: both go
// through the scheduler's parser. An accepted constraint's canonical form
// parses to itself and is accepted in a spec.
func FuzzParseConstraint(f *testing.F) {
	for _, s := range []string{"node.role==manager", "node.labels.zone != a", "engine.labels.gpu==yes", "node.zone==a",
		"node.labels.zone=a", "node.role==boss", "==", "!=", "a==b!=c", "node.labels.==x", " Node.Hostname == h1 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseConstraint(s)
		if err != nil {
			checkFlagError(t, err)
		} else {
			again, err := parseConstraint(c)
			if err != nil || again != c {
				t.Fatalf("canonical %q of %q parses to %q, %v", c, s, again, err)
			}
			sp := fuzzSpec()
			sp.Placement = &swarmpb.Placement{Constraints: []string{c}}
			if err := spec.ValidateServiceSpec(sp, 0); err != nil {
				t.Fatalf("constraint %q parsed but the spec refuses it: %v", c, err)
			}
		}
		d, err := parsePlacementPref("--placement-pref", s)
		if err != nil {
			checkFlagError(t, err)
			return
		}
		sp := fuzzSpec()
		sp.Placement = &swarmpb.Placement{SpreadDescriptors: []string{d}}
		if err := spec.ValidateServiceSpec(sp, 0); err != nil {
			t.Fatalf("preference %q parsed to %q but the spec refuses it: %v", s, d, err)
		}
	})
}

// FuzzParseDuration covers the duration flags, and the CPU and memory
// values. A parsed duration prints back to the same value.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"10s", "1m30s", "-5s", "0", "soon", "9223372036854775807ns", "1e3s", ".5h", "0.5", "64MiB", "NaN", "Inf", "1e400", "-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ns, err := parseDuration("--restart-delay", s); err != nil {
			checkFlagError(t, err)
		} else if back, err := parseDuration("--restart-delay", time.Duration(ns).String()); err != nil || back != ns {
			t.Fatalf("%q parsed to %d, printed as %s, parsed back to %d, %v", s, ns, time.Duration(ns), back, err)
		}
		if _, err := parseCPU("--limit-cpu", s); err != nil {
			checkFlagError(t, err)
		}
		if _, err := parseMemory("--limit-memory", s); err != nil {
			checkFlagError(t, err)
		}
	})
}

func FuzzParseNetworkAttachment(f *testing.F) {
	for _, s := range []string{"appnet", "name=appnet,alias=db", "target=x,alias=a,alias=b", "alias=x", "name=a,name=b", ",,,", "=", "name=,alias=", "a b", "name=a\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		att, err := parseNetworkAttachment("--network", s)
		if err != nil {
			checkFlagError(t, err)
			return
		}
		sp := fuzzSpec()
		sp.Networks = []*swarmpb.NetworkAttachmentConfig{att}
		if err := spec.ValidateServiceSpec(sp, 0); err != nil {
			checkFlagError(t, err)
		}
	})
}
