package state

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
)

func TestWriteFailureLoggedAboveDebug(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want slog.Level
	}{
		{fmt.Errorf("apply: %w", ErrConflict), slog.LevelInfo},
		{errors.New("the cluster has lost quorum"), slog.LevelWarn},
	} {
		if got := WriteFailureLevel(tc.err); got != tc.want {
			t.Errorf("level for %v = %v, want %v", tc.err, got, tc.want)
		}
	}
}
