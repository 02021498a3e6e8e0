package raft

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// Timings are the Raft timeouts. Shorter timeouts fail over faster but
// elect spuriously on slow links; the defaults suit a LAN.
type Timings struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// LeaderHeartbeat is how often the leader heartbeats each follower
	// (hashicorp/raft waits a random LeaderHeartbeat to 2×LeaderHeartbeat
	// between two). 0 keeps hashicorp/raft's fixed ratio, a tenth of
	// HeartbeatTimeout. See leaderHeartbeat for how it is applied and
	// raft/DESIGN.md (Timings) for the bounds it must respect.
	LeaderHeartbeat   time.Duration
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log
	// (hashicorp/raft's default, 10240, when 0). Tests lower it to make a
	// leader send its snapshot to a new follower.
	TrailingLogs uint64
	// LeaderWait bounds how long a write waits for a leader to emerge
	// before it fails with a QuorumError.
	LeaderWait time.Duration
	// JoinWait bounds how long a new manager has to answer over Raft
	// before its addition is undone (AddVoter).
	JoinWait time.Duration
}

// DefaultTimings fail a dead leader over in about one second on a LAN,
// where hashicorp/raft's own defaults take two to three and Docker swarm
// mode's about ten. An idle cluster's Raft traffic is the leader's
// heartbeats (3 to 7 a second to each follower) and a commit-index
// refresh every 500 ms to 1 s (CommitTimeout); BENCHMARKS.md ("An idle
// cluster") has what each costs.
func DefaultTimings() Timings {
	return Timings{
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      500 * time.Millisecond,
		LeaderHeartbeat:    150 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   2 * time.Minute,
		LeaderWait:         4 * time.Second,
		JoinWait:           10 * time.Second,
	}
}

// FastTimings are for in-process test clusters on loopback.
func FastTimings() Timings {
	return Timings{
		// Loose enough that a loaded 2-core machine running the race
		// detector does not depose leaders spuriously.
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotThreshold:  1024,
		SnapshotInterval:   5 * time.Second,
		LeaderWait:         2 * time.Second,
		JoinWait:           5 * time.Second,
	}
}

// Forwarder sends an encoded command to the leader's RaftMembership.Forward.
type Forwarder interface {
	Forward(ctx context.Context, leaderAddr string, cmd []byte) (uint64, error)
}

// Pinger checks that a manager answers; it is used only to say how many
// managers are reachable when quorum is lost.
type Pinger interface {
	Ping(ctx context.Context, addr string) error
}

// Config configures a Node.
type Config struct {
	NodeID    string
	Addr      string // advertised host:port other managers dial
	Dir       string // raft.db and snapshots/
	Stream    hraft.StreamLayer
	Store     *state.Store
	Forwarder Forwarder
	Pinger    Pinger
	Prober    Prober
	Timings   Timings
	Logger    *slog.Logger
	// NoSync skips fsync on the log; only for tests and benchmarks that
	// measure something else.
	NoSync bool
	// DEK is the data encryption key (DEKSize bytes) that seals log
	// entries and snapshots on disk (encrypt.go). Without it new data is
	// written in plaintext and sealed data cannot be read.
	DEK []byte
	// MinFreeBytes is the free space the leader keeps in Dir: below it,
	// writes fail with a DiskFullError before they reach Raft
	// (DefaultMinFreeBytes when 0; negative turns the check off). See
	// diskfull.go.
	MinFreeBytes int64

	// barrier replaces the Raft barrier in tests that make it fail.
	barrier func(timeout time.Duration) error
	// stableHook wraps the stable store in tests that make it fail.
	stableHook func(hraft.StableStore) hraft.StableStore
	// freeSpace replaces the statfs of Dir in tests of a full disk.
	freeSpace func() (uint64, error)
	// snapshotHook wraps the snapshot store in tests that crash mid-snapshot.
	snapshotHook func(hraft.SnapshotStore) hraft.SnapshotStore
}

// Member is one server of the Raft configuration.
type Member struct {
	ID    string
	Addr  string
	Voter bool
}

// Node owns a hashicorp/raft instance, its stores and the FSM over the
// state store. Writes go through Apply, which forwards to the leader when
// this manager is a follower; reads that must be current call ReadBarrier.
type Node struct {
	cfg    Config
	raft   *hraft.Raft
	trans  *hraft.NetworkTransport
	bolt   *raftboltdb.BoltStore
	stable *patientStable
	fsm    *fsm
	obsCh  chan hraft.Observation
	obs    *hraft.Observer
	done   chan struct{}
	stop   chan struct{} // closed when Shutdown starts: ends the stable store's waits for space
	wg     sync.WaitGroup
	closed sync.Once

	// For Stats (stats.go): leaders seen, counted by the observe goroutine.
	leaderChanges atomic.Uint64
	lastLeader    hraft.ServerID // owned by observe

	mu      sync.Mutex
	leader  bool          // leader with the term barrier applied
	term    uint64        // the term of that leadership (valid while leader)
	changed chan struct{} // closed and replaced on every leadership or leader change
	// Reachability of the other members, kept while this node leads (see
	// Unreachable): unreachable holds when a failed heartbeat to a member
	// was observed, contact when the member last answered an
	// AppendEntries (heartbeats included), leaderSince when this node
	// became leader (zero while it follows).
	unreachable map[string]time.Time
	contact     map[string]time.Time
	leaderSince time.Time
	// lastDiskHandoff is when this leader last handed leadership on
	// because its disk was full (diskfull.go).
	lastDiskHandoff time.Time
}

func (c *Config) timings() Timings {
	t := c.Timings
	if t.HeartbeatTimeout == 0 {
		t = DefaultTimings()
	}
	if t.JoinWait == 0 {
		t.JoinWait = DefaultTimings().JoinWait
	}
	return t
}

// openStores opens the log (bolt, also the stable store) and the snapshot
// store, both sealing their data under cfg.DEK. Folders are made 0700,
// existing ones included.
func openStores(cfg Config) (*raftboltdb.BoltStore, hraft.LogStore, hraft.SnapshotStore, error) {
	var aead cipher.AEAD
	if len(cfg.DEK) > 0 {
		var err error
		if aead, err = newAEAD(cfg.DEK); err != nil {
			return nil, nil, nil, err
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("create raft dir: %w", err)
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("restrict raft dir: %w", err)
	}
	dbPath := filepath.Join(cfg.Dir, "raft.db")
	if err := checkBoltFile(dbPath); err != nil {
		return nil, nil, nil, err
	}
	bolt, err := openBolt(dbPath, cfg.NoSync)
	if err != nil {
		return nil, nil, nil, err
	}
	snaps, err := hraft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hclogger(cfg.Logger))
	if err != nil {
		bolt.Close()
		return nil, nil, nil, fmt.Errorf("open snapshot store: %w", err)
	}
	snapDir := filepath.Join(cfg.Dir, "snapshots")
	if err := os.Chmod(snapDir, 0o700); err != nil {
		bolt.Close()
		return nil, nil, nil, fmt.Errorf("restrict snapshot dir: %w", err)
	}
	if err := removePartialSnapshots(snapDir, cfg.Logger); err != nil {
		bolt.Close()
		return nil, nil, nil, err
	}
	return bolt, &encryptedLogs{inner: bolt, aead: aead}, &encryptedSnapshots{inner: snaps, dir: snapDir, aead: aead}, nil
}

// openBolt opens raft.db, reporting the damage bbolt finds (or panics on)
// as a CorruptError.
func openBolt(path string, noSync bool) (_ *raftboltdb.BoltStore, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{What: "raft log", Path: path, Err: fmt.Errorf("%v", p)}
		}
	}()
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: noSync})
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("open raft log %s: %w", path, err)
	}
	if err != nil {
		return nil, &CorruptError{What: "raft log", Path: path, Err: err}
	}
	return bolt, nil
}

func raftConfig(cfg Config) *hraft.Config {
	t := cfg.timings()
	rc := hraft.DefaultConfig()
	rc.LocalID = hraft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = t.HeartbeatTimeout
	rc.ElectionTimeout = t.ElectionTimeout
	rc.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	rc.CommitTimeout = t.CommitTimeout
	rc.SnapshotThreshold = t.SnapshotThreshold
	rc.SnapshotInterval = t.SnapshotInterval
	if t.TrailingLogs > 0 {
		rc.TrailingLogs = t.TrailingLogs
	}
	rc.Logger = hclogger(cfg.Logger)
	return rc
}

// Open starts Raft on the state in cfg.Dir. A node with no state waits to
// be bootstrapped (BootstrapSelf) or added by a leader (AddVoter).
func Open(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	bolt, sealed, snaps, err := openStores(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkLog(sealed, filepath.Join(cfg.Dir, "raft.db")); err != nil {
		bolt.Close()
		return nil, err
	}
	// After checkKey: with the key known good, a snapshot that does not
	// open is damaged, not sealed under another key.
	if err := checkNewestSnapshot(snaps, filepath.Join(cfg.Dir, "snapshots")); err != nil {
		bolt.Close()
		return nil, err
	}
	if cfg.snapshotHook != nil {
		snaps = cfg.snapshotHook(snaps)
	}
	logs, err := hraft.NewLogCache(512, &fullDiskLogs{LogStore: sealed, dir: cfg.Dir})
	if err != nil {
		bolt.Close()
		return nil, err
	}
	trans := hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{
		Stream:  cfg.Stream,
		MaxPool: 4,
		Timeout: 5 * time.Second,
		Logger:  hclogger(cfg.Logger),
	})
	n := &Node{
		cfg: cfg, trans: trans, bolt: bolt, fsm: newFSM(cfg.Store, cfg.Logger),
		obsCh: make(chan hraft.Observation, 128), done: make(chan struct{}), stop: make(chan struct{}),
		changed: make(chan struct{}), unreachable: map[string]time.Time{}, contact: map[string]time.Time{},
	}
	var stable hraft.StableStore = bolt
	if cfg.stableHook != nil {
		stable = cfg.stableHook(stable)
	}
	n.stable = &patientStable{StableStore: stable, dir: cfg.Dir, done: n.stop, logger: cfg.Logger, wait: time.Second}
	r, err := hraft.NewRaft(raftConfig(cfg), n.fsm, logs, n.stable, snaps, &contactTransport{NetworkTransport: trans, onContact: n.recordContact})
	if err != nil {
		trans.Close()
		bolt.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	n.obs = hraft.NewObserver(n.obsCh, false, nil)
	r.RegisterObserver(n.obs)
	n.wg.Add(1)
	go n.observe()
	return n, nil
}

// HasState reports whether dir holds Raft state from an earlier run.
func HasState(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, "raft.db"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// BootstrapSelf makes this node the single voter of a new cluster.
func (n *Node) BootstrapSelf() error {
	f := n.raft.BootstrapCluster(hraft.Configuration{Servers: []hraft.Server{{
		ID: hraft.ServerID(n.cfg.NodeID), Address: hraft.ServerAddress(n.cfg.Addr), Suffrage: hraft.Voter,
	}}})
	if err := f.Error(); err != nil {
		return fmt.Errorf("bootstrap raft: %w", err)
	}
	return nil
}

// observe turns raft observations into leadership state. On becoming
// leader it first applies a barrier, so that the FSM holds every entry of
// earlier terms before this node serves reads or runs leader work.
func (n *Node) observe() {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case o := <-n.obsCh:
			switch d := o.Data.(type) {
			case hraft.RaftState:
				n.leaderHeartbeat()
				n.resetReachability(d == hraft.Leader)
				if d == hraft.Leader {
					n.wg.Add(1)
					go n.becomeLeader()
				} else {
					n.setLeader(false)
				}
			case hraft.LeaderObservation:
				n.countLeader(d)
				n.notify()
			case hraft.FailedHeartbeatObservation:
				n.mu.Lock()
				n.unreachable[string(d.PeerID)] = time.Now()
				n.mu.Unlock()
			case hraft.ResumedHeartbeatObservation:
				n.mu.Lock()
				delete(n.unreachable, string(d.PeerID))
				n.mu.Unlock()
			}
		}
	}
}

// becomeLeader applies the term's barrier and then reports leadership. A
// failed barrier (a slow disk, a follower that lags) is retried with
// backoff for as long as this node leads in the term it started in:
// without the barrier no leader work starts, and a leader that gave up
// would accept nothing until the next election.
func (n *Node) becomeLeader() {
	defer n.wg.Done()
	t := n.cfg.timings()
	term := n.raft.CurrentTerm()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	b := retry.NewBackoff(50*time.Millisecond, t.LeaderWait)
	for {
		if n.raft.State() != hraft.Leader || n.raft.CurrentTerm() != term {
			return
		}
		err := n.barrier(t.LeaderWait)
		if err == nil {
			break
		}
		d := b.Next()
		n.cfg.Logger.Error("leader barrier failed: leader work waits for it; retrying", "term", term, "in", d, "err", err)
		if !retry.Sleep(ctx, d) {
			return
		}
	}
	if n.raft.State() == hraft.Leader && n.raft.CurrentTerm() == term {
		n.mu.Lock()
		n.term = term
		n.mu.Unlock()
		n.setLeader(true)
	}
}

// barrier waits until the FSM has applied every entry of earlier terms.
func (n *Node) barrier(timeout time.Duration) error {
	if n.cfg.barrier != nil {
		return n.cfg.barrier(timeout)
	}
	return n.raft.Barrier(timeout).Error()
}

func (n *Node) setLeader(v bool) {
	n.mu.Lock()
	if n.leader != v {
		n.leader = v
		close(n.changed)
		n.changed = make(chan struct{})
	}
	n.mu.Unlock()
}

func (n *Node) notify() {
	n.mu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
}

// Leadership reports whether this node leads (with its term barrier
// applied) and returns a channel closed at the next change of leadership
// or of the known leader. Leader-only work starts on true and stops when
// the channel closes and Leadership reports false.
func (n *Node) Leadership() (bool, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leader && n.raft.State() == hraft.Leader, n.changed
}

// LeaderTerm is Leadership with the term: the term this node leads in
// (with its barrier applied), 0 when it does not lead.
func (n *Node) LeaderTerm() (uint64, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.leader || n.raft.State() != hraft.Leader {
		return 0, n.changed
	}
	return n.term, n.changed
}

// LeaderSilent reports whether this follower has heard nothing from the
// leader it knows for half a heartbeat timeout: the leader is likely gone,
// and an election about to start, although Leader still names it (it does
// until this node's own heartbeat timeout fires). False on the leader.
func (n *Node) LeaderSilent() bool {
	if n.raft.State() == hraft.Leader {
		return false
	}
	return time.Since(n.raft.LastContact()) > n.cfg.timings().HeartbeatTimeout/2
}

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == hraft.Leader }

// Leader returns the current leader's ID and address, empty when unknown.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// Unreachable reports whether this node, as leader, has lost contact with
// the member: a failed heartbeat to it was observed and it has not answered
// since, or it has not answered for staleContact (counted from the start
// of this term). Marks are not trusted alone: the observation that clears
// one (ResumedHeartbeatObservation) can be lost, when the observer channel
// is full or a step-down stops the heartbeat loop, and a mark must not
// outlive the fault. A follower keeps no view of the others and reports
// every member reachable.
func (n *Node) Unreachable(id string) bool {
	if id == n.cfg.NodeID || n.raft.State() != hraft.Leader {
		return false
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leaderSince.IsZero() {
		return false
	}
	last := n.contact[id]
	if marked, ok := n.unreachable[id]; ok {
		if last.After(marked) {
			delete(n.unreachable, id)
		} else {
			return true
		}
	}
	if last.Before(n.leaderSince) {
		last = n.leaderSince
	}
	return now.Sub(last) > n.staleContact()
}

// staleContact is how long a member may go without answering before the
// leader calls it unreachable: several heartbeat timeouts (the leader
// heartbeats ten times per timeout), so that one slow answer does not flap.
func (n *Node) staleContact() time.Duration { return 4 * n.cfg.timings().HeartbeatTimeout }

// recordContact notes that the member answered an AppendEntries.
func (n *Node) recordContact(id hraft.ServerID) {
	now := time.Now()
	n.mu.Lock()
	n.contact[string(id)] = now
	n.mu.Unlock()
}

// resetReachability forgets every member's reachability on a change of
// Raft state: marks from an earlier term say nothing about this one.
func (n *Node) resetReachability(leader bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.unreachable = map[string]time.Time{}
	n.contact = map[string]time.Time{}
	n.leaderSince = time.Time{}
	if leader {
		n.leaderSince = time.Now()
	}
}

// contactTransport records, for Unreachable, each member that answers an
// AppendEntries. Heartbeats go through AppendEntries (every
// Timings.LeaderHeartbeat to twice that), so a reachable member answers
// often.
type contactTransport struct {
	*hraft.NetworkTransport
	onContact func(hraft.ServerID)
}

// SetHeartbeatHandler turns hashicorp/raft's heartbeat fast path off:
// NewRaft registers processHeartbeat here, which runs appendEntries on
// the transport's goroutine, concurrently with the main loop that
// appendEntries is documented to need (hashicorp/raft#695: a heartbeat
// from a new leader bumps the term while the old leader's main loop
// writes an entry under it, and logs diverge). Without a handler the
// transport hands heartbeats to the main loop like every other RPC. The
// price: a follower busy with a long disk write answers heartbeats late.
// See DESIGN.md, "Known hashicorp/raft issues".
func (t *contactTransport) SetHeartbeatHandler(func(hraft.RPC)) {}

func (t *contactTransport) AppendEntries(id hraft.ServerID, target hraft.ServerAddress, args *hraft.AppendEntriesRequest, resp *hraft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil {
		t.onContact(id)
	}
	return err
}

// AppliedIndex is the last log index applied to the FSM.
func (n *Node) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// Apply replicates a store batch and returns the index it was applied at.
// A follower forwards it to the leader. With no leader within
// Timings.LeaderWait it fails with a *QuorumError.
func (n *Node) Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error) {
	b, succeeded := TagBatch(ctx, b) // request.go
	data, err := EncodeBatch(b)
	if err != nil {
		return 0, err
	}
	idx, err := n.ApplyCommand(ctx, data)
	if err == nil {
		succeeded()
	}
	return idx, err
}

// ApplyCommand is Apply for an encoded envelope (the leader's Forward
// handler calls it).
func (n *Node) ApplyCommand(ctx context.Context, data []byte) (uint64, error) {
	idx, err := n.applyCommand(ctx, data)
	if err != nil && (n.stable.waiting() || (errors.Is(err, ErrNotLeader) || errors.Is(err, ErrQuorumLost)) && n.diskFull()) {
		// The write failed for want of a leader while this node's
		// disk is full (a leader that failed to append steps down; a
		// node that cannot save a term or vote cannot be elected): the
		// full disk is the cause to report. The chain is cut on
		// purpose, so that callers do not retry it as a plain change
		// of leader.
		free, _ := freeBytes(n.cfg.Dir)
		return 0, &DiskFullError{Dir: n.cfg.Dir, Free: free,
			Err: fmt.Errorf("this manager cannot save its Raft term or vote, so it cannot lead or elect: %s", err.Error())}
	}
	return idx, err
}

func (n *Node) applyCommand(ctx context.Context, data []byte) (uint64, error) {
	if term, ok := LeaderTermOf(ctx); ok {
		return n.applyInTerm(ctx, term, data)
	}
	for attempt := 0; attempt < 5; attempt++ {
		if n.raft.State() == hraft.Leader {
			return n.applyLocal(ctx, data)
		}
		addr, err := n.WaitLeader(ctx)
		if err != nil {
			return 0, err
		}
		if n.raft.State() == hraft.Leader {
			continue
		}
		idx, err := n.cfg.Forwarder.Forward(ctx, addr, data)
		if errors.Is(err, ErrNotLeader) {
			// The leader we knew stepped down before taking the entry;
			// nothing was applied, so trying the next leader is safe.
			if err := n.waitChange(ctx); err != nil {
				return 0, err
			}
			continue
		}
		return idx, err
	}
	return 0, fmt.Errorf("write failed: leadership kept changing; try again")
}

type leaderTermKey struct{}

// WithLeaderTerm marks ctx as carrying out the leader work of term (see
// LeaderTerm): Apply under it writes only on this node, only while it
// leads in that term with the term's barrier applied, and only while ctx
// lasts; otherwise it fails with ErrNotLeader and writes nothing. It is
// never forwarded to another leader, nor written in a later term of this
// node.
//
// Leader work (the orchestrator, the scheduler) plans from this node's
// store. A deposed leader's store may lack entries of its own term that
// the next leader commits: its last write may have failed with "leadership
// lost" and yet be committed. Work that kept running past the end of its
// term (it stops only when it notices) and wrote what it planned from that
// store, forwarded or in this node's next term before that term's
// barrier, created a second task for every slot of that write: the
// duplicates of BENCHMARKS.md section 14.
func WithLeaderTerm(ctx context.Context, term uint64) context.Context {
	return context.WithValue(ctx, leaderTermKey{}, term)
}

// LeaderTermOf returns the term ctx's leader work is fenced to
// (WithLeaderTerm), if any.
func LeaderTermOf(ctx context.Context) (uint64, bool) {
	term, ok := ctx.Value(leaderTermKey{}).(uint64)
	return term, ok
}

// applyInTerm is Apply for leader work of term (WithLeaderTerm).
func (n *Node) applyInTerm(ctx context.Context, term uint64, data []byte) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("leader work of term %d ended; nothing written: %w", term, err)
	}
	if cur, _ := n.LeaderTerm(); cur == 0 || cur != term || n.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("%w (leader work of term %d; this manager's leader term is %d): nothing written", ErrNotLeader, term, cur)
	}
	return n.applyLocal(ctx, data)
}

func (n *Node) applyLocal(ctx context.Context, data []byte) (uint64, error) {
	timeout := n.cfg.timings().LeaderWait * 2
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := n.checkSpace(len(data)); err != nil {
		return 0, err
	}
	f := n.raft.Apply(data, timeout)
	if err := n.waitApplied(ctx, f); err != nil {
		var dfe *DiskFullError
		switch {
		case errors.As(err, &dfe):
			// The leader failed to append and stepped down: nothing
			// was committed.
			return 0, dfe
		case strings.Contains(err.Error(), ErrDiskFull.Error()):
			// The same, through hashicorp/raft's LogCache, which
			// formats the store's error into a string.
			free, _ := freeBytes(n.cfg.Dir)
			return 0, &DiskFullError{Dir: n.cfg.Dir, Free: free, Err: errors.New("the leader could not append the write to its log; nothing was committed")}
		case errors.Is(err, hraft.ErrNotLeader):
			return 0, ErrNotLeader
		case errors.Is(err, hraft.ErrLeadershipLost), errors.Is(err, hraft.ErrEnqueueTimeout):
			return 0, n.quorumOr(ctx, fmt.Errorf("leadership lost while writing; the write may or may not have been applied: %w", err))
		case errors.Is(err, hraft.ErrRaftShutdown):
			return 0, ErrShutdown
		}
		return 0, fmt.Errorf("raft apply: %w", err)
	}
	res, ok := f.Response().(applyResult)
	if !ok {
		return f.Index(), nil
	}
	return res.index, res.err
}

// waitApplied waits for an Apply future, but no longer than the caller's
// context or this node's Raft: hashicorp/raft can leave a future that was
// committed but not yet handed to the FSM unanswered forever when it shuts
// down, and its enqueue timeout does not bound the wait for the commit.
// (A manager's Stop hung on a scheduler write waiting so.) Past either, the
// write's outcome is unknown to this caller.
func (n *Node) waitApplied(ctx context.Context, f hraft.ApplyFuture) error {
	res := make(chan error, 1)
	go func() { res <- f.Error() }()
	select {
	case err := <-res:
		return err
	case <-n.done:
		select {
		case err := <-res:
			return err
		default:
			return ErrShutdown
		}
	case <-ctx.Done():
		return n.quorumOr(ctx, fmt.Errorf("the write was not confirmed before the caller gave up; it may or may not have been applied: %w", ctx.Err()))
	}
}

// WaitLeader waits until some node is leader, bounded by
// Timings.LeaderWait, and returns its address; past that it returns a
// *QuorumError.
func (n *Node) WaitLeader(ctx context.Context) (string, error) {
	t := time.NewTimer(n.cfg.timings().LeaderWait)
	defer t.Stop()
	for {
		n.mu.Lock()
		ch := n.changed
		n.mu.Unlock()
		if _, addr := n.Leader(); addr != "" {
			return addr, nil
		}
		select {
		case <-ch:
		case <-t.C:
			return "", n.quorumError(ctx)
		case <-ctx.Done():
			return "", n.quorumOr(ctx, ctx.Err())
		case <-n.done:
			return "", ErrShutdown
		}
	}
}

func (n *Node) waitChange(ctx context.Context) error {
	n.mu.Lock()
	ch := n.changed
	n.mu.Unlock()
	retry.SleepOrWake(ctx, n.cfg.timings().ElectionTimeout, ch)
	return ctx.Err()
}

// quorumOr returns a QuorumError if quorum is in fact lost, else err. Once
// ctx has ended it returns err without pinging: the caller has given up and
// must not be held.
func (n *Node) quorumOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	if qe, complete := n.countReachable(ctx); complete && qe.Reachable < qe.Needed() {
		return qe
	}
	return err
}

// quorumError counts the voters that answer a ping right now. If ctx ends
// before the count is complete, it returns ctx's error instead.
func (n *Node) quorumError(ctx context.Context) error {
	qe, complete := n.countReachable(ctx)
	if !complete {
		return fmt.Errorf("counting the reachable managers: %w", ctx.Err())
	}
	return qe
}

// countReachable pings the other voters, for at most a second and never
// past ctx; complete is false when ctx ended first, leaving the count short.
func (n *Node) countReachable(ctx context.Context) (qe *QuorumError, complete bool) {
	members, err := n.Members()
	if err != nil {
		return &QuorumError{Reachable: 1, Total: 1}, true
	}
	qe = &QuorumError{}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	answered := 0 // by the other voters; guarded by mu while pings run
	for _, m := range members {
		if !m.Voter {
			continue
		}
		qe.Total++
		if m.ID == n.cfg.NodeID {
			qe.Reachable++
			continue
		}
		if n.cfg.Pinger == nil {
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			if n.cfg.Pinger.Ping(pctx, addr) == nil {
				mu.Lock()
				answered++
				mu.Unlock()
			}
		}(m.Addr)
	}
	wg.Wait()
	qe.Reachable += answered
	return qe, ctx.Err() == nil
}

// ReadBarrier makes a following read linearizable: this node must be the
// leader, have applied its term barrier, and confirm with a quorum that it
// still leads (hashicorp/raft's VerifyLeader).
func (n *Node) ReadBarrier(ctx context.Context) error {
	if isLeader, _ := n.Leadership(); !isLeader {
		if n.raft.State() != hraft.Leader {
			return ErrNotLeader
		}
		if err := n.raft.Barrier(n.cfg.timings().LeaderWait).Error(); err != nil {
			return n.quorumOr(ctx, fmt.Errorf("leader barrier: %w", err))
		}
	}
	// Bounded on its own: a verification caught by a shutdown or a lost
	// quorum must not hold the caller for its whole deadline.
	errc := make(chan error, 1)
	go func() { errc <- n.raft.VerifyLeader().Error() }()
	t := time.NewTimer(n.cfg.timings().LeaderWait)
	defer t.Stop()
	select {
	case err := <-errc:
		if err != nil {
			return n.quorumOr(ctx, fmt.Errorf("%w: %v", ErrNotLeader, err))
		}
		return nil
	case <-t.C:
		return n.quorumOr(ctx, fmt.Errorf("%w: leadership could not be confirmed in time", ErrNotLeader))
	case <-ctx.Done():
		return n.quorumOr(ctx, ctx.Err())
	}
}

// Members returns the current Raft configuration.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == hraft.Voter})
	}
	return out, nil
}

// RemoveServer removes a member from the configuration. Leader only.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if err := n.raft.RemoveServer(hraft.ServerID(id), 0, n.cfg.timings().LeaderWait).Error(); err != nil {
		return n.membershipErr(ctx, "remove server", err)
	}
	return nil
}

func (n *Node) membershipErr(ctx context.Context, op string, err error) error {
	if errors.Is(err, hraft.ErrNotLeader) {
		return ErrNotLeader
	}
	return n.quorumOr(ctx, fmt.Errorf("%s: %w", op, err))
}

// TransferLeadership hands leadership to another voter and waits for it.
func (n *Node) TransferLeadership() error {
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("transfer leadership: %w", err)
	}
	return nil
}

// Snapshot forces a snapshot (tests and operators).
func (n *Node) Snapshot() error {
	return n.raft.Snapshot().Error()
}

// Settle waits until this leader's store holds every entry appended to
// its log before the call (a Raft barrier). Leader work starts with it:
// work restarted within a term must not plan from a store that lacks the
// last write of the work it replaces, still in flight when that work
// ended (its Apply gave up with the work's context).
func (n *Node) Settle(ctx context.Context) error {
	f := n.raft.Barrier(n.cfg.timings().LeaderWait)
	res := make(chan error, 1)
	go func() { res <- f.Error() }()
	select {
	case err := <-res:
		if errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) {
			return fmt.Errorf("%w: waiting for the log to be applied: %v", ErrNotLeader, err)
		}
		if err != nil {
			return fmt.Errorf("waiting for the log to be applied: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return ErrShutdown
	}
}

// Term is the current Raft term as this node knows it.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// Shutdown stops Raft and closes its stores. It is safe to call twice.
func (n *Node) Shutdown() error {
	var err error
	n.closed.Do(func() {
		close(n.stop)
		err = waitBounded(n.raft.Shutdown().Error, shutdownWait)
		if errors.Is(err, errShutdownStuck) {
			n.cfg.Logger.Error("Raft did not stop in time; closing its transport and stores anyway", "wait", shutdownWait, "err", err)
		}
		n.raft.DeregisterObserver(n.obs)
		close(n.done)
		n.wg.Wait()
		n.trans.Close()
		if cerr := n.bolt.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// shutdownWait bounds how long Shutdown waits for hashicorp/raft's own
// shutdown. That waits for every goroutine Raft started, and a leader's
// pipelined replication to a follower can block forever there: when its
// decoder has already quit, a last best-effort send waits on a pipeline
// queue nobody drains any more (seen once in CI: a demoted manager's Stop
// hung for ten minutes in netPipeline.AppendEntries). Past the bound the
// stuck goroutine is left behind, its node stopped (Raft's run loop has
// returned by then), and the transport and stores are closed as usual.
const shutdownWait = 10 * time.Second

var errShutdownStuck = errors.New("raft shutdown did not finish: a hashicorp/raft goroutine is stuck")

// waitBounded runs wait, giving up after d with errShutdownStuck (wait
// keeps running in the background).
func waitBounded(wait func() error, d time.Duration) error {
	res := make(chan error, 1)
	go func() { res <- wait() }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-res:
		return err
	case <-t.C:
		return fmt.Errorf("%w after %v", errShutdownStuck, d)
	}
}

// RecoverSingle rewrites the Raft configuration stored in cfg.Dir so that
// this node is the only voter, keeping every committed entry: the recovery
// from permanent quorum loss (init --force-new-cluster). Raft must not be
// running on cfg.Dir.
func RecoverSingle(cfg Config) error {
	bolt, sealed, snaps, err := openStores(cfg)
	if err != nil {
		return err
	}
	defer bolt.Close()
	_, trans := hraft.NewInmemTransport(hraft.ServerAddress(cfg.Addr))
	scratch := newFSM(state.New(), cfg.Logger)
	conf := hraft.Configuration{Servers: []hraft.Server{{
		ID: hraft.ServerID(cfg.NodeID), Address: hraft.ServerAddress(cfg.Addr), Suffrage: hraft.Voter,
	}}}
	if err := hraft.RecoverCluster(raftConfig(cfg), scratch, sealed, bolt, snaps, trans, conf); err != nil {
		return fmt.Errorf("recover raft configuration: %w", err)
	}
	return nil
}

// ListenAddr resolves a host:port into a net.Addr for the stream layer.
func ListenAddr(hostport string) (net.Addr, error) {
	return net.ResolveTCPAddr("tcp", hostport)
}
