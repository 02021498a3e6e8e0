package chaos

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Outcome is what a client learned about one call.
type Outcome int

const (
	// OK: the call succeeded; a write took effect exactly once.
	OK Outcome = iota
	// Failed: the call definitely did not take effect (refused before any
	// Raft write, or never reached the daemon).
	Failed
	// Ambiguous: a timeout, a lost connection or a lost leadership: a write
	// may or may not have taken effect, at any time after its start.
	Ambiguous
)

func (o Outcome) String() string { return [...]string{"ok", "failed", "ambiguous"}[o] }

// Op is one recorded call on one register: a node label or a service label.
type Op struct {
	Client  int
	Via     string // the daemon whose socket was used
	Key     string // n/<node>/<label> or s/<service>
	Write   bool
	Value   string // written, or read
	Start   time.Time
	End     time.Time
	Outcome Outcome
	Err     string
}

func (o Op) String() string {
	kind := "read"
	if o.Write {
		kind = "write"
	}
	s := fmt.Sprintf("c%d via %s %s %s=%q [%s +%s] %s", o.Client, o.Via, kind, o.Key, o.Value,
		o.Start.Format("15:04:05.000"), o.End.Sub(o.Start).Round(time.Millisecond), o.Outcome)
	if o.Err != "" {
		s += ": " + o.Err
	}
	return s
}

// History records every call of a run, from every client.
type History struct {
	mu  sync.Mutex
	ops []Op
}

func (h *History) Add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Classify turns a call's error into its outcome. Only errors that prove
// the call changed nothing count as Failed; everything else a write
// returns is Ambiguous. A quorum error is ambiguous for a write: the
// leader may have appended it before losing its majority ("the write may
// or may not have been applied").
func Classify(err error) Outcome {
	if err == nil {
		return OK
	}
	st, _ := status.FromError(err)
	msg := st.Message()
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.Aborted, codes.Unimplemented, codes.Unauthenticated, codes.FailedPrecondition:
		// Aborted is "update out of sequence" (issue 9 #11): refused.
		return Failed
	case codes.Unavailable:
		// The socket could not be dialled: the call was never sent.
		if strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such file") {
			return Failed
		}
	}
	return Ambiguous
}

// register is the model's input and output.
type regInput struct {
	key   string
	write bool
	value string
}

// registerModel is one register per key, every register starting empty.
// Ambiguous writes enter the history with no end: the checker may place
// them anywhere after their start, or (as they never constrain a read
// unless read) effectively nowhere.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(regInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return fmt.Sprintf("put(%s, %q)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.key, output)
	},
}

// Verdict is the checker's finding on one history.
type Verdict struct {
	Checked    int // operations given to the checker (ok reads, ok and ambiguous writes)
	Ambiguous  int
	Failed     int
	Result     porcupine.CheckResult
	BadKeys    []string // keys whose sub-history is not linearizable
	LostWrites []string // acknowledged writes whose effect vanished
}

// Check runs the linearizability checker on the ops and looks for lost
// acknowledged writes against final, the values read after healing.
func Check(ops []Op, final map[string]string, timeout time.Duration) Verdict {
	var v Verdict
	origin := time.Time{}
	for _, op := range ops {
		if origin.IsZero() || op.Start.Before(origin) {
			origin = op.Start
		}
	}
	var hist []porcupine.Operation
	perKey := map[string][]porcupine.Operation{}
	for i, op := range ops {
		switch {
		case op.Outcome == Failed:
			v.Failed++
			continue
		case op.Outcome == Ambiguous && !op.Write:
			v.Ambiguous++
			continue // a read that returned nothing constrains nothing
		case op.Outcome == Ambiguous:
			v.Ambiguous++
		}
		end := op.End.Sub(origin).Nanoseconds()
		if op.Outcome == Ambiguous {
			end = math.MaxInt64
		}
		var out any = op.Value
		if op.Write {
			out = ""
		}
		p := porcupine.Operation{
			ClientId: op.Client,
			Input:    regInput{key: op.Key, write: op.Write, value: op.Value},
			Call:     op.Start.Sub(origin).Nanoseconds(),
			Output:   out,
			Return:   end,
			Metadata: i,
		}
		hist = append(hist, p)
		perKey[op.Key] = append(perKey[op.Key], p)
	}
	v.Checked = len(hist)
	v.Result = porcupine.CheckOperationsTimeout(registerModel, hist, timeout)
	if v.Result == porcupine.Illegal {
		for k, kh := range perKey {
			if porcupine.CheckOperationsTimeout(registerModel, kh, timeout) == porcupine.Illegal {
				v.BadKeys = append(v.BadKeys, k)
			}
		}
		sort.Strings(v.BadKeys)
	}
	v.LostWrites = lostWrites(ops, final)
	return v
}

// lostWrites finds acknowledged writes that the final value contradicts:
// the final value must come from a write that was not over before some
// acknowledged write to the same key began; an empty final value with any
// acknowledged write is a loss too.
func lostWrites(ops []Op, final map[string]string) []string {
	var lost []string
	for key, val := range final {
		var src *Op
		for i := range ops {
			op := &ops[i]
			if op.Key == key && op.Write && op.Value == val && op.Outcome != Failed {
				src = op
				break
			}
		}
		if src == nil && val != "" {
			lost = append(lost, fmt.Sprintf("%s: final value %q was never written", key, val))
			continue
		}
		for _, op := range ops {
			if op.Key != key || !op.Write || op.Outcome != OK || op.Value == val {
				continue
			}
			switch {
			case src == nil:
				lost = append(lost, fmt.Sprintf("%s: final value empty, but %s was acknowledged", key, op))
			case src.Outcome == OK && op.Start.After(src.End):
				lost = append(lost, fmt.Sprintf("%s: final value %q (written by %s) but %s came after it", key, val, src, op))
			}
		}
	}
	sort.Strings(lost)
	return lost
}
