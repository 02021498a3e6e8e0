package clock

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOffsetFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offset")
	if err := os.WriteFile(path, []byte("-5m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { follow(path, stop); close(done) }()
	defer func() { close(stop); <-done; offset.Store(0) }()
	wait := func(want time.Duration) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			d := time.Until(Now())
			if d > want-time.Minute/2 && d < want+time.Minute/2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Now is %v from time.Now, want about %v", d, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		start := Now()
		if el := Since(start); el < 0 || el > time.Second {
			t.Fatalf("Since(Now()) = %v: a jump must not show in durations", el)
		}
	}
	wait(-5 * time.Minute)
	if err := os.WriteFile(path, []byte("3m"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait(3 * time.Minute)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wait(0)
}
