package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec/fake"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.b.String()), "\n")
}

// A task's failure is logged at Warn with its service, task and node IDs,
// so that an operator finds it in the log.
func TestTaskFailureLoggedWithIDs(t *testing.T) {
	var buf lockedBuffer
	ex, rec := fake.New("node1"), newRecorder()
	ex.FailPrepare("missing:v9", errors.New("pull access denied"))
	w := New(ex, rec, slog.New(slog.NewJSONHandler(&buf, nil)), WithBackoff(time.Millisecond, 20*time.Millisecond))
	t.Cleanup(func() { w.Close() })
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "missing:v9")}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_REJECTED)
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, line := range buf.lines() {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			if rec["level"] == "WARN" && rec["task"] == "t1" && rec["service"] == "svc1" && rec["node"] == "node1" &&
				strings.Contains(fmt.Sprint(rec["err"]), "pull access denied") {
				return nil
			}
		}
		return fmt.Errorf("no Warn line with the task's IDs and error in %q", buf.lines())
	})
}
