package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/raftswarm/raftswarm/internal/retry"
)

// newClient is the load generator's HTTP/1.1 client: keep-alive with up
// to `conns` idle connections per address, or a new TCP connection per
// request (DisableKeepAlives: the request says Connection: close and the
// server closes after answering). src, if not nil, maps a "host:port" the
// client connects to onto the local IP it connects from (bindNoPort);
// others get the kernel's choice.
func newClient(keepAlive bool, conns int, timeout time.Duration, src map[string]string) (*http.Client, *http.Transport) {
	dial := (&net.Dialer{Timeout: 3 * time.Second}).DialContext
	if src != nil {
		dialers := map[string]*net.Dialer{}
		for addr, ip := range src {
			dialers[addr] = &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Control: bindNoPort}
		}
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if d, ok := dialers[addr]; ok {
				return d.DialContext(ctx, network, addr)
			}
			return (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
		}
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         dial,
		DisableKeepAlives:   !keepAlive,
		DisableCompression:  true,
		MaxIdleConns:        0, // no global limit
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: timeout}, tr
}

// do sends one GET / and reads the whole answer.
func do(c *http.Client, req *http.Request, keepBody bool) (string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body string
	if keepBody {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		body = string(b)
	} else if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("status %d", resp.StatusCode)
	}
	return body, nil
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT on a socket about to be bound
// to a local address: the kernel then picks the port at connect, unique
// for the 4-tuple, as it does for an unbound socket, instead of at bind,
// unique for the local address alone. Without it, every new connection's
// bind searched the port range past the TIME-WAIT sockets of the earlier
// ones from that address: a run with one worker opening new connections
// fell to 85 req/s, the load generator burning 11 ms of CPU per request.
func bindNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

var checkClient, _ = newClient(false, 0, 3*time.Second, nil)

func getOnce(addr string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	return do(checkClient, req, true)
}

// field extracts key=value from the demo app's answer line.
func field(answer, key string) string {
	for _, f := range strings.Fields(answer) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// loadResult is one closed-loop run.
type loadResult struct {
	ok, failed int
	elapsed    time.Duration
	lat        []time.Duration // of the successful requests
	errSample  map[string]int
}

func (r loadResult) rps() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// closedLoop runs `workers` goroutines, each sending one request after the
// other to addrs in a shared round robin, for warm + d; only requests that
// complete within the last d count.
func closedLoop(addrs []string, src map[string]string, workers int, keepAlive bool, warm, d time.Duration) loadResult {
	client, tr := newClient(keepAlive, workers, 5*time.Second, src)
	defer tr.CloseIdleConnections()
	var rr atomic.Uint64
	start := time.Now()
	from, to := start.Add(warm), start.Add(warm+d)
	type part struct {
		ok, failed int
		lat        []time.Duration
		errs       map[string]int
	}
	parts := make([]part, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(p *part) {
			defer wg.Done()
			p.errs = map[string]int{}
			p.lat = make([]time.Duration, 0, 1<<14)
			reqs := make([]*http.Request, len(addrs))
			for i, a := range addrs {
				reqs[i], _ = http.NewRequest(http.MethodGet, "http://"+a+"/", nil)
			}
			for {
				t0 := time.Now()
				if !t0.Before(to) {
					return
				}
				i := int(rr.Add(1) % uint64(len(addrs)))
				_, err := do(client, reqs[i], false)
				t1 := time.Now()
				if t1.Before(from) || !t1.Before(to) {
					continue
				}
				if err != nil {
					p.failed++
					if len(p.errs) < 5 {
						p.errs[shortErr(err)]++
					}
					continue
				}
				p.ok++
				p.lat = append(p.lat, t1.Sub(t0))
			}
		}(&parts[w])
	}
	wg.Wait()
	res := loadResult{elapsed: d, errSample: map[string]int{}}
	for _, p := range parts {
		res.ok += p.ok
		res.failed += p.failed
		res.lat = append(res.lat, p.lat...)
		for e, n := range p.errs {
			res.errSample[e] += n
		}
	}
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	return res
}

// pct is the nearest-rank percentile of sorted durations.
func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(p*float64(len(s))+0.999999) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

func shortErr(err error) string {
	s := err.Error()
	// Drop the per-connection addresses so equal errors group.
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.Contains(s, "127.0.0.") {
		s = s[:strings.Index(s, " ")] + " ...: " + s[i+2:]
	}
	return s
}

// pacedLoad sends `rate` requests per second in all (a new connection per
// request), round robin over addrs, until stopped: request k is due at
// start + k/rate, sent by goroutine k % workers.
type pacedLoad struct {
	start time.Time
	stop  chan struct{}
	done  sync.WaitGroup
	mu    sync.Mutex
	recs  []rec
}

type rec struct {
	sent, end time.Duration // since start
	err       string
	addr      string
	version   string
}

func startPaced(addrs []string, rate, workers int) *pacedLoad {
	client, _ := newClient(false, 0, 5*time.Second, nil)
	l := &pacedLoad{start: time.Now(), stop: make(chan struct{})}
	interval := time.Second / time.Duration(rate)
	for w := 0; w < workers; w++ {
		l.done.Add(1)
		go func(w int) {
			defer l.done.Done()
			limit := l.start.Add(10 * time.Minute) // bounded, whatever happens
			for k := w; ; k += workers {
				due := l.start.Add(time.Duration(k) * interval)
				if wait := time.Until(due); wait > 0 {
					if !retry.SleepOrWake(context.Background(), wait, l.stop) {
						return
					}
				} else {
					select {
					case <-l.stop:
						return
					default:
					}
				}
				if time.Now().After(limit) {
					return
				}
				addr := addrs[k%len(addrs)]
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
				t0 := time.Now()
				body, err := do(client, req, true)
				r := rec{sent: t0.Sub(l.start), end: time.Since(l.start), addr: addr, version: field(body, "version")}
				if err != nil {
					r.err = err.Error()
				}
				l.mu.Lock()
				l.recs = append(l.recs, r)
				l.mu.Unlock()
			}
		}(w)
	}
	return l
}

func (l *pacedLoad) finish() []rec {
	close(l.stop)
	l.done.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.recs, func(i, j int) bool { return l.recs[i].sent < l.recs[j].sent })
	return l.recs
}
