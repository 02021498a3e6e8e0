package loop

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/raftswarm/raftswarm/state"
)

func TestWriteFailureLoggedAboveDebug(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want slog.Level
	}{
		{fmt.Errorf("apply: %w", state.ErrConflict), slog.LevelInfo},
		{errors.New("the cluster has lost quorum"), slog.LevelWarn},
	} {
		if got := writeFailureLevel(tc.err); got != tc.want {
			t.Errorf("level for %v = %v, want %v", tc.err, got, tc.want)
		}
	}
}
