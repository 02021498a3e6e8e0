package loop

import (
	"context"
	"errors"
	"log/slog"

	"github.com/raftswarm/raftswarm/state"
)

// logWriteFailure logs a failed leader write above Debug, so that a leader
// whose writes keep failing is visible at the default level: a sequence
// conflict (an agent's status write got in first; the next pass fixes it)
// at Info, anything else (lost quorum, a full disk) at Warn.
func logWriteFailure(log *slog.Logger, msg string, err error) {
	log.Log(context.Background(), writeFailureLevel(err), msg, "err", err)
}

func writeFailureLevel(err error) slog.Level {
	if errors.Is(err, state.ErrConflict) {
		return slog.LevelInfo
	}
	return slog.LevelWarn
}
