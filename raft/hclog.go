package raft

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// slogHCLog is an hclog.Logger that writes through a *slog.Logger, so
// hashicorp/raft's own lines share the node's handler, format and
// destination instead of going to stderr in hclog's format.
//
// The level gate is hclog's: Raft is chatty at Info, so its lines below Warn
// are dropped unless the node logs at Debug (the behaviour of the hclog
// logger this replaces). Lines that pass keep their own level in slog.
type slogHCLog struct {
	l       *slog.Logger
	name    string
	level   *atomic.Int32 // hclog.Level, shared by every derived logger
	implied []any
}

// hclogger adapts the node's logger for hashicorp/raft.
func hclogger(l *slog.Logger) hclog.Logger {
	if l == nil {
		l = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	lvl := hclog.Warn
	if l.Enabled(context.Background(), slog.LevelDebug) {
		lvl = hclog.Info
	}
	a := &slogHCLog{l: l, name: "raft", level: new(atomic.Int32)}
	a.level.Store(int32(lvl))
	return a
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *slogHCLog) enabled(l hclog.Level) bool {
	min := hclog.Level(a.level.Load())
	return l != hclog.Off && min != hclog.Off && l >= min
}

func (a *slogHCLog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.NoLevel || level == hclog.DefaultLevel {
		level = hclog.Info
	}
	if !a.enabled(level) {
		return
	}
	attrs := make([]any, 0, 2+len(a.implied)+len(args))
	attrs = append(attrs, "component", a.name)
	attrs = append(attrs, a.implied...)
	attrs = append(attrs, args...)
	a.l.Log(context.Background(), slogLevel(level), msg, attrs...)
}

func (a *slogHCLog) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *slogHCLog) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *slogHCLog) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *slogHCLog) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *slogHCLog) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *slogHCLog) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *slogHCLog) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *slogHCLog) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *slogHCLog) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *slogHCLog) IsError() bool { return a.enabled(hclog.Error) }

func (a *slogHCLog) ImpliedArgs() []any { return a.implied }

func (a *slogHCLog) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any(nil), a.implied...), args...)
	return &c
}

func (a *slogHCLog) Name() string { return a.name }

func (a *slogHCLog) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (a *slogHCLog) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *slogHCLog) SetLevel(level hclog.Level) { a.level.Store(int32(level)) }
func (a *slogHCLog) GetLevel() hclog.Level      { return hclog.Level(a.level.Load()) }

func (a *slogHCLog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *slogHCLog) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := &stdWriter{a: a, level: hclog.Info}
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		w.level, w.force = opts.ForceLevel, true
	}
	return w
}

// stdWriter turns the lines of a standard *log.Logger into log records,
// reading a "[WARN]"-style prefix as the level, as hclog's own adapter does.
type stdWriter struct {
	a     *slogHCLog
	level hclog.Level
	force bool
}

func (w *stdWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(string(bytes.TrimRight(p, "\n")), "\n") {
		level, msg := w.level, strings.TrimSpace(line)
		if !w.force {
			for _, pre := range []struct {
				tag string
				lvl hclog.Level
			}{{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info}, {"[WARN]", hclog.Warn}, {"[ERR]", hclog.Error}, {"[ERROR]", hclog.Error}} {
				if rest, ok := strings.CutPrefix(msg, pre.tag); ok {
					level, msg = pre.lvl, strings.TrimSpace(rest)
					break
				}
			}
		}
		w.a.Log(level, msg)
	}
	return len(p), nil
}
