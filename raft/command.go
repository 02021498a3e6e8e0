package raft

import (
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// StoreBatchVersion is the payload schema version this manager reads for
// COMMAND_TYPE_STORE_BATCH: it accepts every version up to it. Version 2
// added task status patches (StoreAction.task_status), version 3 task
// desired-state patches (StoreAction.task_desired); a batch is written
// with the lowest version that holds what it carries, so that a manager
// not yet upgraded refuses (ErrUnknownCommand) only what it cannot apply.
// Nodes report it (NodeDescription.store_batch_version), and the leader
// writes a kind of patch only once every manager reports its version
// (MembersRead).
const StoreBatchVersion = 3

// The payload versions that introduced each kind of patch.
const (
	BatchVersionStatusPatch  = 2
	BatchVersionDesiredPatch = 3
)

const storeBatchVersion = StoreBatchVersion

// batchVersion is the payload version b needs.
func batchVersion(b *swarmpb.StoreBatch) uint32 {
	v := uint32(1)
	for _, a := range b.GetActions() {
		switch {
		case a.GetTaskDesired() != nil:
			return BatchVersionDesiredPatch
		case a.GetTaskStatus() != nil:
			v = BatchVersionStatusPatch
		}
	}
	return v
}

// MembersRead reports whether every member of the Raft configuration has
// said (NodeDescription.store_batch_version, read from tx) that it applies
// store-batch payload version v. Until then, as in a rolling upgrade from
// a build that cannot, the leader writes what every member reads: a
// manager that cannot read an entry skips it (raft/DESIGN.md), and its
// store would lose the entry's changes. A member whose node or
// description is not stored yet counts as old, and so does an empty
// configuration.
func MembersRead(members []Member, tx state.ReadTx, v uint32) bool {
	if len(members) == 0 {
		return false
	}
	for _, m := range members {
		if tx.GetNode(m.ID).GetDescription().GetStoreBatchVersion() < v {
			return false
		}
	}
	return true
}

// MemberLister is the part of the Raft node that lists the members of its
// configuration.
type MemberLister interface {
	Members() ([]Member, error)
}

// ConfigurationReads reports whether every member of r's configuration
// applies store-batch payload version v (MembersRead, against st). A
// configuration that cannot be read counts as old, so the leader keeps
// writing what every manager reads. The dispatcher asks it before writing
// task status patches, the orchestrator before writing desired-state
// patches.
func ConfigurationReads(r MemberLister, st *state.Store, v uint32) bool {
	members, err := r.Members()
	if err != nil {
		return false
	}
	ok := false
	st.View(func(tx state.ReadTx) { ok = MembersRead(members, tx, v) })
	return ok
}

// EncodeBatch wraps a store batch in the versioned command envelope.
func EncodeBatch(b *swarmpb.StoreBatch) ([]byte, error) {
	payload, err := proto.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode store batch: %w", err)
	}
	return proto.Marshal(&swarmpb.Command{
		Type:    swarmpb.CommandType_COMMAND_TYPE_STORE_BATCH,
		Version: batchVersion(b),
		Payload: payload,
	})
}

// DecodeCommand parses an envelope without interpreting its payload.
func DecodeCommand(data []byte) (*swarmpb.Command, error) {
	var c swarmpb.Command
	if err := proto.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode command envelope: %w", err)
	}
	return &c, nil
}
