package raft

import (
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// StoreBatchVersion is the payload schema version this manager reads for
// COMMAND_TYPE_STORE_BATCH: it accepts every version up to it. Version 2
// added task status patches (StoreAction.task_status); a batch holding one
// is written as version 2, any other as version 1, so that a manager not
// yet upgraded refuses (ErrUnknownCommand) only what it cannot apply.
// Nodes report it (NodeDescription.store_batch_version), and the leader
// writes patches only once every manager reports 2 or more.
const StoreBatchVersion = 2

const storeBatchVersion = StoreBatchVersion

// batchVersion is the payload version b needs.
func batchVersion(b *swarmpb.StoreBatch) uint32 {
	for _, a := range b.GetActions() {
		if a.GetTaskStatus() != nil {
			return 2
		}
	}
	return 1
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
