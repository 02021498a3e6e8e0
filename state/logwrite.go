package state

import (
	"context"
	"errors"
	"log/slog"
)

// LogWriteFailure logs a failed leader write above Debug, so that a leader
// whose writes keep failing is visible at the default level: a sequence
// conflict (a concurrent write got in first; the next pass fixes it) at
// Info, anything else (lost quorum, a full disk) at Warn.
func LogWriteFailure(log *slog.Logger, msg string, err error) {
	log.Log(context.Background(), WriteFailureLevel(err), msg, "err", err)
}

// WriteFailureLevel is the level LogWriteFailure logs err at.
func WriteFailureLevel(err error) slog.Level {
	if errors.Is(err, ErrConflict) {
		return slog.LevelInfo
	}
	return slog.LevelWarn
}
