package netplane

import (
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeUpstream serves example.com. A 192.0.2.7 on 127.0.0.1; with hang set it
// reads queries and never answers.
func fakeUpstream(t *testing.T, hang bool) (addr string, queries *atomic.Int32) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	queries = new(atomic.Int32)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		queries.Add(1)
		if hang {
			return
		}
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Name == "example.com." {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 7)})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String(), queries
}

// dnsFixture serves the test view's appnet bridge on 127.0.0.1, with local
// tasks r1 at 127.0.0.21, w1 at 127.0.0.22 (also on othernet at 127.0.0.23).
func dnsFixture(t *testing.T, upstreams []string) *dnsServer {
	t.Helper()
	local := map[string]map[string]netip.Addr{
		appnet:   {"r1": mp("127.0.0.21"), "w1": mp("127.0.0.22")},
		othernet: {"w1": mp("127.0.0.23")},
	}
	tb := BuildTable(TableInput{View: testView(), NodeID: "self", Local: local}, nil)
	fwd := newForwarder("/nonexistent")
	fwd.static = upstreams
	fwd.timeout, fwd.total = 300*time.Millisecond, 600*time.Millisecond
	s, err := startDNS(netip.MustParseAddrPort("127.0.0.1:0"), appnet, func() *Table { return tb }, nil, fwd, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

func query(t *testing.T, server netip.AddrPort, from, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	var local net.Addr
	if network == "tcp" {
		local = &net.TCPAddr{IP: net.ParseIP(from)}
	} else {
		local = &net.UDPAddr{IP: net.ParseIP(from)}
	}
	c := &dns.Client{Net: network, Timeout: 3 * time.Second, Dialer: &net.Dialer{LocalAddr: local, Timeout: 3 * time.Second}}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	resp, _, err := c.Exchange(m, server.String())
	if err != nil {
		t.Fatalf("query %s from %s over %s: %v", name, from, network, err)
	}
	return resp
}

func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func TestDNSOwnedNames(t *testing.T) {
	up, _ := fakeUpstream(t, false)
	s := dnsFixture(t, []string{up})
	for _, network := range []string{"udp", "tcp"} {
		m := query(t, s.Addr(), "127.0.0.21", network, "ReDiS", dns.TypeA)
		if got := answers(m); m.Rcode != dns.RcodeSuccess || len(got) != 1 || got[0] != "10.96.0.2" {
			t.Fatalf("%s: redis = %v rcode %d", network, got, m.Rcode)
		}
		if m.Answer[0].Header().Ttl != 0 || !m.Authoritative {
			t.Fatalf("%s: answer not authoritative with TTL 0: %v", network, m)
		}
		m = query(t, s.Addr(), "127.0.0.21", network, "cache", dns.TypeA)
		if got := answers(m); len(got) != 1 || got[0] != "10.96.0.2" {
			t.Fatalf("%s: alias cache = %v", network, got)
		}
	}
	// tasks.redis: the local container and the remote task's address.
	m := query(t, s.Addr(), "127.0.0.22", "udp", "tasks.redis", dns.TypeA)
	if got := answers(m); len(got) != 2 || got[0] != "127.0.0.21" {
		t.Fatalf("tasks.redis = %v", got)
	}
	// AAAA for an owned name: empty NOERROR, not forwarded.
	m = query(t, s.Addr(), "127.0.0.21", "udp", "redis", dns.TypeAAAA)
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
		t.Fatalf("AAAA redis = %v", m)
	}
}

func TestDNSIsolation(t *testing.T) {
	up, _ := fakeUpstream(t, false)
	s := dnsFixture(t, []string{up})
	// r1 is on appnet only: db (othernet) is not its name; it is forwarded
	// and the upstream does not know it.
	if m := query(t, s.Addr(), "127.0.0.21", "udp", "db", dns.TypeA); m.Rcode != dns.RcodeNameError {
		t.Fatalf("db from r1: rcode %d answers %v", m.Rcode, answers(m))
	}
	// w1 is on both networks: it sees db, asking through appnet's bridge.
	if got := answers(query(t, s.Addr(), "127.0.0.22", "udp", "db", dns.TypeA)); len(got) != 1 || got[0] != "10.96.16.2" {
		t.Fatalf("db from w1 = %v", got)
	}
	// An unknown source asking on appnet's bridge sees appnet only.
	if got := answers(query(t, s.Addr(), "127.0.0.99", "udp", "web", dns.TypeA)); len(got) != 1 || got[0] != "10.96.0.3" {
		t.Fatalf("web from unknown source = %v", got)
	}
	if m := query(t, s.Addr(), "127.0.0.99", "udp", "db", dns.TypeA); m.Rcode != dns.RcodeNameError {
		t.Fatalf("db from unknown source: rcode %d", m.Rcode)
	}
}

func TestDNSForwarding(t *testing.T) {
	up, n := fakeUpstream(t, false)
	s := dnsFixture(t, []string{up})
	for _, network := range []string{"udp", "tcp"} {
		m := query(t, s.Addr(), "127.0.0.21", network, "example.com", dns.TypeA)
		if got := answers(m); len(got) != 1 || got[0] != "192.0.2.7" {
			t.Fatalf("%s: example.com = %v rcode %d", network, got, m.Rcode)
		}
	}
	if n.Load() < 2 {
		t.Fatalf("upstream saw %d queries", n.Load())
	}
}

func TestDNSUpstreamFailureIsServfail(t *testing.T) {
	hung, hq := fakeUpstream(t, true)
	// A dead upstream first (nothing listens), then a hung one.
	dead, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	s := dnsFixture(t, []string{deadAddr, hung})
	start := time.Now()
	m := query(t, s.Addr(), "127.0.0.21", "udp", "example.com", dns.TypeA)
	if m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %d, want SERVFAIL", m.Rcode)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("SERVFAIL took %v", d)
	}
	if hq.Load() == 0 {
		t.Fatal("the second upstream was not tried")
	}
	// No resolvers at all (no resolv.conf): SERVFAIL too.
	s2 := dnsFixture(t, nil)
	s2.fwd.mu.Lock()
	s2.fwd.static = nil
	s2.fwd.mu.Unlock()
	if m := query(t, s2.Addr(), "127.0.0.21", "udp", "example.com", dns.TypeA); m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("without resolvers: rcode %d", m.Rcode)
	}
}
