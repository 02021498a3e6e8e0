package raft

import (
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// storeBatchVersion is the payload schema version written for
// COMMAND_TYPE_STORE_BATCH. Readers accept every version up to it.
const storeBatchVersion = 1

// EncodeBatch wraps a store batch in the versioned command envelope.
func EncodeBatch(b *swarmpb.StoreBatch) ([]byte, error) {
	payload, err := proto.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode store batch: %w", err)
	}
	return proto.Marshal(&swarmpb.Command{
		Type:    swarmpb.CommandType_COMMAND_TYPE_STORE_BATCH,
		Version: storeBatchVersion,
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
