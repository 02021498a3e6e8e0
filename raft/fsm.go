package raft

import (
	"fmt"
	"io"
	"log/slog"

	hraft "github.com/hashicorp/raft"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// applyResult is what FSM.Apply returns through raft's ApplyFuture.
type applyResult struct {
	index uint64
	err   error
}

// commandHandler applies one decoded envelope at a log index.
type commandHandler func(st *state.Store, index uint64, now int64, c *swarmpb.Command) error

// fsm is a thin adapter from hashicorp/raft to the state store: it decodes
// the envelope and dispatches through a table keyed by command type, so a new
// command type is one registration, not another case in a growing switch.
type fsm struct {
	store    *state.Store
	log      *slog.Logger
	handlers map[swarmpb.CommandType]commandHandler
}

func newFSM(st *state.Store, log *slog.Logger) *fsm {
	f := &fsm{store: st, log: log, handlers: map[swarmpb.CommandType]commandHandler{}}
	f.register(swarmpb.CommandType_COMMAND_TYPE_STORE_BATCH, applyStoreBatch)
	return f
}

func (f *fsm) register(t swarmpb.CommandType, h commandHandler) { f.handlers[t] = h }

func applyStoreBatch(st *state.Store, index uint64, now int64, c *swarmpb.Command) error {
	if c.Version > storeBatchVersion {
		st.SetIndex(index)
		return fmt.Errorf("%w: store batch payload version %d (this manager reads up to %d)", ErrUnknownCommand, c.Version, storeBatchVersion)
	}
	var b swarmpb.StoreBatch
	if err := proto.Unmarshal(c.Payload, &b); err != nil {
		st.SetIndex(index)
		return fmt.Errorf("decode store batch: %w", err)
	}
	_, err := st.ApplyDecodedBatch(index, now, &b)
	return err
}

// Apply is called by raft for every committed command entry, in order.
// Every outcome is deterministic, so all replicas agree even on failures.
func (f *fsm) Apply(l *hraft.Log) interface{} {
	var now int64
	if !l.AppendedAt.IsZero() {
		now = l.AppendedAt.UnixNano()
	}
	c, err := DecodeCommand(l.Data)
	if err != nil {
		f.store.SetIndex(l.Index)
		return applyResult{index: l.Index, err: err}
	}
	h, ok := f.handlers[c.Type]
	if !ok {
		// A newer manager proposed a type we cannot read. Skipping it on
		// every replica of this version keeps them identical; the operator
		// sees the error and must finish upgrading the managers.
		f.store.SetIndex(l.Index)
		f.log.Error("skipping raft entry of unknown command type; upgrade every manager", "index", l.Index, "type", int32(c.Type))
		return applyResult{index: l.Index, err: fmt.Errorf("%w %d", ErrUnknownCommand, int32(c.Type))}
	}
	return applyResult{index: l.Index, err: h(f.store, l.Index, now, c)}
}

// Snapshot captures the store; raft calls it on the FSM goroutine, so no
// Apply runs concurrently and the copy is consistent. Persist runs later,
// concurrently with Apply, on immutable objects.
func (f *fsm) Snapshot() (hraft.FSMSnapshot, error) {
	snap := f.store.Snapshot()
	snap.Index = f.store.Index()
	return &fsmSnapshot{snap: snap}, nil
}

// Restore replaces the whole state; the store closes every watcher so that
// consumers re-read from the new state.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	var snap swarmpb.Snapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	return f.store.Restore(snap.Index, &snap)
}

type fsmSnapshot struct{ snap *swarmpb.Snapshot }

func (s *fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	data, err := proto.Marshal(s.snap)
	if err == nil {
		_, err = sink.Write(data)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
