package retry

import (
	"context"
	"errors"
	"time"
)

// Backoff yields delays that double from Min up to Max. The zero value is
// not useful; set Min and Max. Reset it after a success. A Backoff is not
// safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// NewBackoff returns a backoff doubling from min up to max.
func NewBackoff(min, max time.Duration) *Backoff { return &Backoff{Min: min, Max: max} }

// Next returns the delay before the next attempt and doubles the one after.
func (b *Backoff) Next() time.Duration {
	if b.cur < b.Min {
		b.cur = b.Min
	}
	d := b.cur
	b.cur = min(b.cur*2, b.Max)
	if d > b.Max {
		d = b.Max
	}
	return d
}

// Reset starts the next failure's delays from Min again.
func (b *Backoff) Reset() { b.cur = 0 }

// Wait sleeps for the next delay. It returns false if ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Next()) }

// Sleep waits for d, or until ctx ends; it reports whether the full delay
// passed.
func Sleep(ctx context.Context, d time.Duration) bool { return SleepOrWake(ctx, d, nil) }

// SleepOrWake waits for d, until wake receives, or until ctx ends; it
// reports whether the full delay passed. A loop whose wait a newer piece of
// work should cut short (a status that replaces the one being resent)
// passes that work's signal as wake; a nil wake never fires.
func SleepOrWake(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
		return false
	case <-t.C:
		return true
	}
}

// permanent marks an error that must not be retried.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so that Do returns it at once instead of retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Do calls op until it succeeds, returns an error wrapped by Permanent, or
// ctx ends; it waits b's delays between attempts. It returns op's last error
// (unwrapped from Permanent), or ctx's error if op never ran to completion.
func Do(ctx context.Context, b *Backoff, op func(context.Context) error) error {
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		if !b.Wait(ctx) {
			return errors.Join(ctx.Err(), err)
		}
	}
}
