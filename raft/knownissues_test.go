package raft

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// crashingStable lets the first `left` writes through and fails every
// write after them: the process died there.
type crashingStable struct {
	hraft.StableStore
	left int
}

var errCrashed = errors.New("crashed")

func (s *crashingStable) write(f func() error) error {
	if s.left == 0 {
		return errCrashed
	}
	s.left--
	return f()
}

func (s *crashingStable) Set(k, v []byte) error {
	return s.write(func() error { return s.StableStore.Set(k, v) })
}

func (s *crashingStable) SetUint64(k []byte, v uint64) error {
	return s.write(func() error { return s.StableStore.SetUint64(k, v) })
}

// TestVoteSurvivesCrashAtEveryWrite is hashicorp/raft#661. It replays the
// stable-store writes raft makes to grant a vote in a new term (requestVote:
// setCurrentTerm, then persistVote's two writes) through the node's stable
// store, with a crash after each write, and checks that no crash point
// leaves the new vote term beside the candidate of the older vote: raft
// would grant that candidate's request in the new term after a restart
// without checking that its log is up to date.
func TestVoteSurvivesCrashAtEveryWrite(t *testing.T) {
	const oldTerm, newTerm = 5, 6
	for crashAfter := 0; ; crashAfter++ {
		mem := hraft.NewInmemStore()
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(mem.SetUint64([]byte("CurrentTerm"), oldTerm))
		must(mem.SetUint64(keyLastVoteTerm, oldTerm))
		must(mem.Set(keyLastVoteCand, []byte("old-candidate")))

		st := &patientStable{StableStore: &crashingStable{StableStore: mem, left: crashAfter},
			logger: slog.New(slog.NewTextHandler(io.Discard, nil)), wait: time.Millisecond}
		err := st.SetUint64([]byte("CurrentTerm"), newTerm)
		if err == nil {
			err = st.SetUint64(keyLastVoteTerm, newTerm)
		}
		if err == nil {
			err = st.Set(keyLastVoteCand, []byte("new-candidate"))
		}
		if err != nil && !errors.Is(err, errCrashed) {
			t.Fatal(err)
		}

		voteTerm, _ := mem.GetUint64(keyLastVoteTerm)
		cand, _ := mem.Get(keyLastVoteCand)
		current, _ := mem.GetUint64([]byte("CurrentTerm"))
		state := fmt.Sprintf("crash after %d writes: current term %d, vote term %d, candidate %q", crashAfter, current, voteTerm, cand)
		if voteTerm == newTerm && len(cand) > 0 && !bytes.Equal(cand, []byte("new-candidate")) {
			t.Fatalf("%s: a restart would grant the old candidate a vote in the new term", state)
		}
		if voteTerm > current {
			t.Fatalf("%s: the vote's term is ahead of the current term", state)
		}
		if err == nil {
			if voteTerm != newTerm || string(cand) != "new-candidate" {
				t.Fatalf("%s: the vote was not saved", state)
			}
			return
		}
	}
}

// TestHeartbeatFastPathOff is the mitigation of hashicorp/raft#695: the
// node's transport hands a heartbeat to raft's main loop (Consumer), not
// to the handler raft registers for its fast path, which runs
// appendEntries concurrently with the main loop.
func TestHeartbeatFastPathOff(t *testing.T) {
	l1, l2 := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	t1 := hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{Stream: l1, MaxPool: 1, Timeout: 5 * time.Second})
	t2 := hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{Stream: l2, MaxPool: 1, Timeout: 5 * time.Second})
	defer t1.Close()
	defer t2.Close()
	ct := &contactTransport{NetworkTransport: t1, onContact: func(hraft.ServerID) {}}
	fast := make(chan struct{}, 1)
	var trans hraft.Transport = ct // as NewRaft sees it
	trans.SetHeartbeatHandler(func(rpc hraft.RPC) {
		fast <- struct{}{}
		rpc.Respond(&hraft.AppendEntriesResponse{Term: 3}, nil)
	})
	errc := make(chan error, 1)
	go func() {
		var resp hraft.AppendEntriesResponse
		errc <- t2.AppendEntries("n1", ct.LocalAddr(), &hraft.AppendEntriesRequest{
			RPCHeader: hraft.RPCHeader{ID: []byte("n2"), Addr: []byte(l2.Addr().String())}, Term: 3}, &resp)
	}()
	select {
	case rpc := <-ct.Consumer():
		if _, ok := rpc.Command.(*hraft.AppendEntriesRequest); !ok {
			t.Fatalf("got %T", rpc.Command)
		}
		rpc.Respond(&hraft.AppendEntriesResponse{Term: 3}, nil)
	case <-fast:
		t.Fatal("the heartbeat took the fast path")
	case <-time.After(10 * time.Second):
		t.Fatal("the heartbeat never arrived")
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
