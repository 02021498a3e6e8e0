package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// kv prints "Key:\tvalue" lines aligned on a tabwriter.
type kv struct{ tw *tabwriter.Writer }

func newKV(w io.Writer) kv { return kv{tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)} }

// line prints one value, escaped (escapeText): values come from the
// cluster state, and may hold anything a node or a user stored.
func (k kv) line(indent int, key string, format string, args ...any) {
	fmt.Fprintf(k.tw, "%s%s:\t%s\n", strings.Repeat(" ", indent), key, escapeText(fmt.Sprintf(format, args...)))
}

// item prints one list entry (a label), escaped.
func (k kv) item(prefix, s string) {
	fmt.Fprintf(k.tw, "%s%s\n", prefix, escapeText(s))
}

func (k kv) head(indent int, key string) {
	fmt.Fprintf(k.tw, "%s%s:\n", strings.Repeat(" ", indent), key)
}

func (k kv) flush() { _ = k.tw.Flush() }

func formatTime(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339)
}

func formatNanoCPUs(n int64) string {
	return fmt.Sprintf("%g", float64(n)/1e9)
}

func sortedLabels(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func printNodePretty(w io.Writer, ni *swarmpb.NodeInfo) {
	n := ni.GetNode()
	d := n.GetDescription()
	k := newKV(w)
	k.line(0, "ID", "%s", n.GetId())
	k.line(0, "Hostname", "%s", d.GetHostname())
	k.line(0, "Joined at", "%s", formatTime(n.GetMeta().GetCreatedAt()))
	k.head(0, "Status")
	k.line(1, "State", "%s", nodeStatusString(n.GetStatus()))
	if m := n.GetStatusMessage(); m != "" {
		k.line(1, "Message", "%s", m)
	}
	k.line(1, "Availability", "%s", availabilityString(n.GetSpec().GetAvailability()))
	k.line(1, "Address", "%s", n.GetAddr())
	if n.GetRole() == swarmpb.NodeRole_NODE_ROLE_MANAGER || ni.GetManagerStatus() != "" {
		k.head(0, "Manager Status")
		k.line(1, "Address", "%s", n.GetAddr())
		k.line(1, "Raft Status", "%s", ni.GetManagerStatus())
		k.line(1, "Leader", "%s", yesNo(ni.GetManagerStatus() == "Leader"))
	}
	k.head(0, "Platform")
	k.line(1, "Operating System", "%s", d.GetOs())
	k.line(1, "Architecture", "%s", d.GetArch())
	k.head(0, "Resources")
	k.line(1, "CPUs", "%s", formatNanoCPUs(d.GetResources().GetNanoCpus()))
	k.line(1, "Memory", "%s", units.BytesSize(float64(d.GetResources().GetMemoryBytes())))
	k.line(0, "Engine Version", "%s", d.GetEngineVersion())
	if e := d.GetEngineError(); e != "" {
		k.line(0, "Engine Error", "%s", e)
	}
	if mp := d.GetMeshPath(); mp != "" {
		k.head(0, "Routing Mesh")
		k.line(1, "Path", "%s", mp)
		if r := d.GetMeshPathReason(); r != "" {
			k.line(1, "Reason", "%s", r)
		}
	}
	if labels := n.GetSpec().GetLabels(); len(labels) > 0 {
		k.head(0, "Labels")
		for _, l := range sortedLabels(labels) {
			k.item(" - ", l)
		}
	}
	k.flush()
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func printServicePretty(w io.Writer, s *swarmpb.Service) {
	sp := s.GetSpec()
	c := sp.GetContainer()
	k := newKV(w)
	k.line(0, "ID", "%s", s.GetId())
	k.line(0, "Name", "%s", sp.GetName())
	if len(sp.GetLabels()) > 0 {
		k.head(0, "Labels")
		for _, l := range sortedLabels(sp.GetLabels()) {
			k.item(" ", l)
		}
	}
	k.line(0, "Service Mode", "%s", modeString(sp.GetMode()))
	if sp.GetMode() == swarmpb.ServiceMode_SERVICE_MODE_REPLICATED {
		k.line(1, "Replicas", "%d", sp.GetReplicas())
	}
	if us := s.GetUpdateStatus(); us.Current() != swarmpb.UpdateState_UPDATE_STATE_UNSPECIFIED {
		k.head(0, "UpdateStatus")
		k.line(1, "State", "%s", us.Current().Text())
		k.line(1, "Started", "%s", formatTime(us.GetStartedAt()))
		if us.GetCompletedAt() != 0 {
			k.line(1, "Completed", "%s", formatTime(us.GetCompletedAt()))
		}
		k.line(1, "Message", "%s", us.GetMessage())
	}
	if p := sp.GetPlacement(); len(p.GetConstraints()) > 0 || len(p.GetSpreadDescriptors()) > 0 || p.GetMaxReplicasPerNode() > 0 {
		k.head(0, "Placement")
		if len(p.GetConstraints()) > 0 {
			k.line(1, "Constraints", "%s", strings.Join(p.GetConstraints(), ", "))
		}
		for _, d := range p.GetSpreadDescriptors() {
			k.line(1, "Preference", "spread=%s", d)
		}
		if p.GetMaxReplicasPerNode() > 0 {
			k.line(1, "Max Replicas Per Node", "%d", p.GetMaxReplicasPerNode())
		}
	}
	printUpdateConfig(k, "UpdateConfig", sp.GetUpdate())
	printUpdateConfig(k, "RollbackConfig", sp.GetRollback())
	if r := sp.GetRestart(); r != nil {
		k.head(0, "RestartPolicy")
		k.line(1, "Condition", "%s", restartConditionString(r.GetCondition()))
		k.line(1, "Delay", "%s", time.Duration(r.GetDelayNs()))
		k.line(1, "Max Attempts", "%d", r.GetMaxAttempts())
		k.line(1, "Window", "%s", time.Duration(r.GetWindowNs()))
	}
	k.head(0, "ContainerSpec")
	k.line(1, "Image", "%s", c.GetImage())
	if len(c.GetCommand()) > 0 {
		k.line(1, "Command", "%s", strings.Join(c.GetCommand(), " "))
	}
	if len(c.GetArgs()) > 0 {
		k.line(1, "Args", "%s", strings.Join(c.GetArgs(), " "))
	}
	if len(c.GetEnv()) > 0 {
		k.line(1, "Env", "%s", strings.Join(c.GetEnv(), " "))
	}
	for _, kvp := range [][2]string{{"Dir", c.GetDir()}, {"User", c.GetUser()}, {"Hostname", c.GetHostname()}} {
		if kvp[1] != "" {
			k.line(1, kvp[0], "%s", kvp[1])
		}
	}
	if g := c.GetStopGracePeriodNs(); g != 0 {
		k.line(1, "StopGracePeriod", "%s", time.Duration(g))
	}
	if h := c.GetHealthcheck(); h != nil {
		k.line(1, "Healthcheck", "%s", strings.Join(h.GetTest(), " "))
	}
	if len(c.GetMounts()) > 0 {
		k.head(0, "Mounts")
		for _, m := range c.GetMounts() {
			k.line(1, "Target", "%s", m.GetTarget())
			k.line(2, "Source", "%s", m.GetSource())
			k.line(2, "ReadOnly", "%t", m.GetReadOnly())
			k.line(2, "Type", "%s", mountTypeString(m.GetType()))
		}
	}
	printDataRefs(k, c) // service_secrets.go
	if res := sp.GetResources(); res != nil {
		k.head(0, "Resources")
		if r := res.GetReservations(); r != nil {
			k.head(1, "Reservations")
			k.line(2, "CPU", "%s", formatNanoCPUs(r.GetNanoCpus()))
			k.line(2, "Memory", "%s", units.BytesSize(float64(r.GetMemoryBytes())))
		}
		if l := res.GetLimits(); l != nil {
			k.head(1, "Limits")
			k.line(2, "CPU", "%s", formatNanoCPUs(l.GetNanoCpus()))
			k.line(2, "Memory", "%s", units.BytesSize(float64(l.GetMemoryBytes())))
		}
	}
	if len(sp.GetPorts()) > 0 {
		k.head(0, "Ports")
		for _, p := range sp.GetPorts() {
			k.line(1, "PublishedPort", "%d", p.GetPublishedPort())
			k.line(2, "Protocol", "%s", p.GetProtocol())
			k.line(2, "TargetPort", "%d", p.GetTargetPort())
			k.line(2, "PublishMode", "%s", p.GetPublishMode())
			if pp := p.GetProxyProtocol(); pp != "" {
				k.line(2, "ProxyProtocol", "%s", pp)
			}
		}
	}
	k.flush()
}

func printUpdateConfig(k kv, title string, u *swarmpb.UpdateConfig) {
	if u == nil {
		return
	}
	k.head(0, title)
	k.line(1, "Parallelism", "%d", u.GetParallelism())
	if u.GetDelayNs() != 0 {
		k.line(1, "Delay", "%s", time.Duration(u.GetDelayNs()))
	}
	k.line(1, "On failure", "%s", u.FailureActionValue().Text())
	k.line(1, "Monitoring Period", "%s", time.Duration(u.GetMonitorNs()))
	k.line(1, "Max failure ratio", "%g", u.GetMaxFailureRatio())
	k.line(1, "Update order", "%s", u.OrderValue().Text())
}

func modeString(m swarmpb.ServiceMode) string {
	if m == swarmpb.ServiceMode_SERVICE_MODE_GLOBAL {
		return "global"
	}
	return "replicated"
}

func mountTypeString(t swarmpb.Mount_Type) string {
	if t == swarmpb.Mount_TYPE_BIND {
		return "bind"
	}
	return "volume"
}

func restartConditionString(c swarmpb.RestartPolicy_Condition) string {
	switch c {
	case swarmpb.RestartPolicy_CONDITION_NONE:
		return "none"
	case swarmpb.RestartPolicy_CONDITION_ON_FAILURE:
		return "on-failure"
	}
	return "any"
}
