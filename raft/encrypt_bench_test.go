package raft

import (
	"fmt"
	"testing"

	hraft "github.com/hashicorp/raft"
)

// BenchmarkLogStore measures the CPU cost of sealing and opening entries
// alone, over an in-memory store, with and without a data key:
//
//	go test -run - -bench BenchmarkLogStore ./raft/
func BenchmarkLogStore(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		b.Run(fmt.Sprintf("sealed=%v", sealed), func(b *testing.B) {
			s := &encryptedLogs{inner: hraft.NewInmemStore()}
			if sealed {
				dek, _ := NewKey()
				s.aead, _ = newAEAD(dek)
			}
			batch := make([]*hraft.Log, 64)
			data := make([]byte, 115)
			b.SetBytes(int64(len(batch) * len(data)))
			var out hraft.Log
			for i := 0; i < b.N; i++ {
				for j := range batch {
					batch[j] = &hraft.Log{Index: uint64(i*len(batch) + j + 1), Term: 1, Type: hraft.LogCommand, Data: data}
				}
				if err := s.StoreLogs(batch); err != nil {
					b.Fatal(err)
				}
				for _, l := range batch {
					if err := s.GetLog(l.Index, &out); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
