// Command loadgen is the load generator of bench/discovery. It is built as
// a static binary and shipped in a FROM scratch image; the benchmark runs it
// as a service task on a cluster network (so it resolves service names the
// way any task does) in "idle" mode, and runs the measurements inside that
// container with `docker exec`:
//
//	loadgen idle                                    wait for SIGTERM
//	loadgen load -url URL [-c N] [-keepalive] [-d 10s] [-warmup 1s]
//	    closed loop of GET URL with N workers; prints one JSON Summary
//	loadgen load -lookup NAME [-c N] [-d 10s] [-warmup 1s]
//	    the same with name lookups (A and AAAA, as a dial does) instead
//	loadgen probe -url URL -until COND [-period 50ms] [-timeout 60s]
//	    one GET per period on a new connection (new name lookup too);
//	    prints {"event":"ready",...} at the first answer, then
//	    {"event":"met",...} when COND holds, and exits
//
// COND is "answer" (any 200 answer), "answer-has=S" / "answer-not=S" (a
// 200 answer whose body contains / does not contain S) or "refused" (the
// connection was refused).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen idle | load -url URL ... | probe -url URL -until COND ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "idle":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		<-ctx.Done()
		stop()
	case "load":
		err = loadCmd(os.Args[2:])
	case "probe":
		err = probeCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q: use idle, load or probe", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func newClient(keepAlive bool, conns int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		DisableKeepAlives:   !keepAlive,
		DisableCompression:  true,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// get sends one request and reads the whole answer.
func get(c *http.Client, req *http.Request) (string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), nil
}

func loadCmd(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	url := fs.String("url", "", "URL to GET")
	lookup := fs.String("lookup", "", "instead of GET: look NAME up (the resolver a dial uses)")
	workers := fs.Int("c", 1, "concurrent workers (closed loop each)")
	keepAlive := fs.Bool("keepalive", false, "reuse connections (else one new connection per request)")
	d := fs.Duration("d", 10*time.Second, "measured duration")
	warm := fs.Duration("warmup", time.Second, "unmeasured warm-up")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*url == "") == (*lookup == "") || *workers < 1 || *d <= 0 {
		return errors.New("load needs -url or -lookup, -c >= 1 and -d > 0")
	}
	client := newClient(*keepAlive, *workers, 5*time.Second)
	start := time.Now()
	w := window{from: start.Add(*warm), to: start.Add(*warm + *d)}
	type part struct {
		lat    []time.Duration
		failed int
		errs   map[string]int
	}
	parts := make([]part, *workers)
	var wg sync.WaitGroup
	for i := range parts {
		wg.Add(1)
		go func(p *part) {
			defer wg.Done()
			p.errs = map[string]int{}
			p.lat = make([]time.Duration, 0, 1<<14)
			req, _ := http.NewRequest(http.MethodGet, *url, nil)
			for {
				t0 := time.Now()
				if !t0.Before(w.to) {
					return
				}
				var err error
				if *lookup != "" {
					_, err = net.DefaultResolver.LookupHost(context.Background(), *lookup)
				} else {
					_, err = get(client, req)
				}
				t1 := time.Now()
				if !w.in(t1) {
					continue
				}
				if err != nil {
					p.failed++
					if len(p.errs) < 5 {
						p.errs[err.Error()]++
					}
					continue
				}
				p.lat = append(p.lat, t1.Sub(t0))
			}
		}(&parts[i])
	}
	wg.Wait()
	var lat []time.Duration
	failed := 0
	errs := map[string]int{}
	for _, p := range parts {
		lat = append(lat, p.lat...)
		failed += p.failed
		for e, n := range p.errs {
			errs[e] += n
		}
	}
	s := summarize(lat, failed, *d)
	s.URL, s.Workers, s.KeepAlive = *url, *workers, *keepAlive
	if *lookup != "" {
		s.URL = "lookup:" + *lookup
	}
	s.FromNs, s.ToNs = w.from.UnixNano(), w.to.UnixNano()
	if len(errs) > 0 {
		s.ErrSample = errs
	}
	return json.NewEncoder(os.Stdout).Encode(s)
}

// probeEvent is one line of probe output.
type probeEvent struct {
	Event   string  `json:"event"` // ready, met, timeout
	AtNs    int64   `json:"at_ns"` // wall clock (Unix ns) when the probe that decided it ended
	Answer  string  `json:"answer,omitempty"`
	Err     string  `json:"err,omitempty"`
	ProbeMs float64 `json:"probe_ms"` // how long that probe took
	Probes  int     `json:"probes"`   // probes sent so far
	Failed  int     `json:"failed"`   // probes that got no answer since ready
	// FirstErr is the first failure since ready, if any.
	FirstErr string `json:"first_err,omitempty"`
}

// parseCond turns COND into a test of one probe's outcome.
func parseCond(s string) (func(answer string, err error) bool, error) {
	switch {
	case s == "answer":
		return func(_ string, err error) bool { return err == nil }, nil
	case s == "refused":
		return func(_ string, err error) bool { return err != nil && errors.Is(err, syscall.ECONNREFUSED) }, nil
	case strings.HasPrefix(s, "answer-has="):
		sub := strings.TrimPrefix(s, "answer-has=")
		return func(a string, err error) bool { return err == nil && strings.Contains(a, sub) }, nil
	case strings.HasPrefix(s, "answer-not="):
		sub := strings.TrimPrefix(s, "answer-not=")
		return func(a string, err error) bool { return err == nil && !strings.Contains(a, sub) }, nil
	}
	return nil, fmt.Errorf("unknown condition %q: use answer, answer-has=S, answer-not=S or refused", s)
}

func probeCmd(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	url := fs.String("url", "", "URL to GET")
	until := fs.String("until", "answer", "condition that ends the probe")
	period := fs.Duration("period", 50*time.Millisecond, "time between probe starts")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	reqTimeout := fs.Duration("req-timeout", 2*time.Second, "timeout of one probe")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cond, err := parseCond(*until)
	if err != nil {
		return err
	}
	if *url == "" || *period <= 0 {
		return errors.New("probe needs -url and -period > 0")
	}
	client := newClient(false, 0, *reqTimeout)
	out := json.NewEncoder(os.Stdout)
	deadline := time.Now().Add(*timeout)
	tick := time.NewTicker(*period)
	defer tick.Stop()
	ready := false
	ev := probeEvent{}
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, *url, nil)
		t0 := time.Now()
		answer, err := get(client, req)
		t1 := time.Now()
		ev.Probes++
		ev.AtNs, ev.ProbeMs = t1.UnixNano(), msOf(t1.Sub(t0))
		ev.Answer, ev.Err = strings.TrimSpace(answer), ""
		if err != nil {
			ev.Err = err.Error()
		}
		switch {
		case !ready && err == nil:
			ready = true
			ev.Event = "ready"
			if err := out.Encode(ev); err != nil {
				return err
			}
		case ready && cond(answer, err):
			ev.Event = "met"
			return out.Encode(ev)
		case ready && err != nil:
			ev.Failed++
			if ev.FirstErr == "" {
				ev.FirstErr = ev.Err
			}
		}
		<-tick.C
	}
	ev.Event = "timeout"
	_ = out.Encode(ev)
	return fmt.Errorf("condition %q not met within %v", *until, *timeout)
}
