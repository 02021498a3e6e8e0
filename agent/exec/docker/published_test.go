package docker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"testing"

	"github.com/docker/docker/client"

	"github.com/raftswarm/raftswarm/agent/exec"
)

// PublishedTargets reads each running task container's published TCP
// ports and its address on its primary network from one container list,
// and skips what is not this node's, not running, not TCP or unpublished.
func TestPublishedTargets(t *testing.T) {
	const list = `[
	 {"Id":"a","State":"running","Labels":{"raftswarm.node.id":"n1","raftswarm.task.id":"t1"},
	  "HostConfig":{"NetworkMode":"rs-net"},
	  "Ports":[{"IP":"127.0.7.1","PrivatePort":80,"PublicPort":32768,"Type":"tcp"},
	           {"IP":"::","PrivatePort":80,"PublicPort":32768,"Type":"tcp"},
	           {"IP":"127.0.7.1","PrivatePort":53,"PublicPort":32769,"Type":"udp"},
	           {"PrivatePort":8080,"Type":"tcp"}],
	  "NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.9"},"rs-net":{"IPAddress":"10.0.9.2"}}}},
	 {"Id":"b","State":"running","Labels":{"raftswarm.node.id":"n1","raftswarm.task.id":"t2"},
	  "HostConfig":{"NetworkMode":"default"},
	  "Ports":[{"IP":"127.0.7.1","PrivatePort":443,"PublicPort":32770,"Type":"tcp"}],
	  "NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.3"}}}},
	 {"Id":"c","State":"exited","Labels":{"raftswarm.node.id":"n1","raftswarm.task.id":"t3"},
	  "Ports":[{"PrivatePort":80,"PublicPort":32771,"Type":"tcp"}],
	  "NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.4"}}}},
	 {"Id":"d","State":"running","Labels":{"raftswarm.node.id":"n2","raftswarm.task.id":"t4"},
	  "Ports":[{"PrivatePort":80,"PublicPort":32772,"Type":"tcp"}],
	  "NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.5"}}}}
	]`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/v1.41/containers/json" {
			w.WriteHeader(http.StatusNotImplemented)
			return
		}
		w.Write([]byte(list))
	}))
	defer srv.Close()
	cli, err := client.NewClientWithOpts(client.WithHost("tcp://"+srv.Listener.Addr().String()), client.WithVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	e := newWithEngine(cli, "n1", defaultTimeouts)
	got, err := e.PublishedTargets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].HostPort < got[j].HostPort })
	want := []exec.PublishedTarget{
		{TaskID: "t1", HostPort: 32768, Target: netip.MustParseAddrPort("10.0.9.2:80")},
		{TaskID: "t1", HostPort: 32768, Target: netip.MustParseAddrPort("10.0.9.2:80")},
		{TaskID: "t2", HostPort: 32770, Target: netip.MustParseAddrPort("172.17.0.3:443")},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
}
