package main

import (
	"errors"
	"math"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.50, 50 * time.Millisecond}, {0.90, 90 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(empty) = %v, want 0", got)
	}
	if got := percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("percentile(one value) = %v, want 7", got)
	}
}

func TestSummarizeSortsAndCounts(t *testing.T) {
	// Unsorted input: 3 ms, 1 ms, 2 ms, 4 ms over 2 s, 5 failures.
	lat := []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	s := summarize(lat, 5, 2*time.Second)
	if s.Requests != 4 || s.Errors != 5 {
		t.Fatalf("requests, errors = %d, %d; want 4, 5", s.Requests, s.Errors)
	}
	if s.RPS != 2 {
		t.Errorf("rps = %v, want 2 (4 requests in 2 s; failures do not count)", s.RPS)
	}
	if s.P50ms != 2 || s.P99ms != 4 || s.MaxMs != 4 || s.P90ms != 4 {
		t.Errorf("p50/p90/p99/max = %v/%v/%v/%v ms, want 2/4/4/4", s.P50ms, s.P90ms, s.P99ms, s.MaxMs)
	}
	if z := summarize(nil, 0, 0); z.RPS != 0 || z.P50ms != 0 || math.IsNaN(z.RPS) {
		t.Errorf("empty summary = %+v, want zeros", z)
	}
}

func TestWindowExcludesWarmupAndTail(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := window{from: t0.Add(time.Second), to: t0.Add(11 * time.Second)}
	for _, c := range []struct {
		at   time.Duration
		want bool
	}{{0, false}, {999 * time.Millisecond, false}, {time.Second, true}, {5 * time.Second, true}, {11 * time.Second, false}, {12 * time.Second, false}} {
		if got := w.in(t0.Add(c.at)); got != c.want {
			t.Errorf("window.in(start+%v) = %v, want %v", c.at, got, c.want)
		}
	}
}

func TestProbeCondition(t *testing.T) {
	refused := errRefusedForTest()
	for _, c := range []struct {
		cond   string
		answer string
		err    error
		want   bool
	}{
		{"answer-not=task=old", "task=new node=n version=v1\n", nil, true},
		{"answer-not=task=old", "task=old node=n version=v1\n", nil, false},
		{"answer-not=task=old", "", refused, false},
		{"answer-has=task=new", "task=new node=n\n", nil, true},
		{"answer-has=task=new", "task=old node=n\n", nil, false},
		{"refused", "", refused, true},
		{"refused", "task=old", nil, false},
		{"answer", "task=x", nil, true},
		{"answer", "", refused, false},
	} {
		m, err := parseCond(c.cond)
		if err != nil {
			t.Fatalf("parseCond(%q): %v", c.cond, err)
		}
		if got := m(c.answer, c.err); got != c.want {
			t.Errorf("cond %q on (%q, %v) = %v, want %v", c.cond, c.answer, c.err, got, c.want)
		}
	}
	if _, err := parseCond("bogus"); err == nil {
		t.Error("parseCond(bogus) accepted")
	}
}

// errRefusedForTest is what a dial to a port nobody listens on returns.
func errRefusedForTest() error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

func TestProbeRefusedMatchesARealRefusal(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nobody listens there now
	c := newClient(false, 0, 2*time.Second)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	_, gerr := get(c, req)
	m, _ := parseCond("refused")
	if !m("", gerr) {
		t.Fatalf("a GET to a closed port (%v) does not count as refused", gerr)
	}
	if m("", errors.New("timeout")) {
		t.Fatal("a timeout counts as refused")
	}
}
