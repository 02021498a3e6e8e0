package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBackoffDoublesToMaxAndResets(t *testing.T) {
	b := NewBackoff(10*time.Millisecond, 70*time.Millisecond)
	want := []time.Duration{10, 20, 40, 70, 70}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("delay %d = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.Next(); got != 10*time.Millisecond {
		t.Fatalf("after reset = %v, want 10ms", got)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on a cancelled context reported a full delay")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep of 1ms did not complete")
	}
}

func TestDo(t *testing.T) {
	b := NewBackoff(time.Millisecond, 2*time.Millisecond)
	n := 0
	err := Do(context.Background(), b, func(context.Context) error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Do = %v after %d calls, want nil after 3", err, n)
	}

	stop := errors.New("stop")
	n = 0
	err = Do(context.Background(), b, func(context.Context) error { n++; return Permanent(stop) })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Do = %v after %d calls, want stop after 1", err, n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = Do(ctx, b, func(context.Context) error { return errors.New("always") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %v, want the deadline", err)
	}
}

func TestSleepOrWake(t *testing.T) {
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	if SleepOrWake(context.Background(), time.Hour, wake) {
		t.Fatal("SleepOrWake after a wake reported a full delay")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if SleepOrWake(ctx, time.Hour, wake) {
		t.Fatal("SleepOrWake on a cancelled context reported a full delay")
	}
	if !SleepOrWake(context.Background(), time.Millisecond, nil) {
		t.Fatal("SleepOrWake of 1ms with no wake did not complete")
	}
}
