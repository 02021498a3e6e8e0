package agent

import (
	"sync"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// dataKey is one content version of a secret or config.
type dataKey struct {
	id      string
	version uint64
}

// dataStore holds the secret and config contents the session brought, in
// memory only: they are never written to the node's disk by the agent
// (the executor decides how a task sees them: secrets on a tmpfs). A full
// session message replaces everything, since the leader sends a new
// session every content its tasks still need.
type dataStore struct {
	mu      sync.RWMutex
	secrets map[dataKey][]byte
	configs map[dataKey][]byte
}

var _ exec.DataSource = (*dataStore)(nil)

func newDataStore() *dataStore {
	return &dataStore{secrets: map[dataKey][]byte{}, configs: map[dataKey][]byte{}}
}

// apply records a session message's payloads; full starts over.
func (s *dataStore) apply(msg *swarmpb.SessionMessage, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if full {
		clear(s.secrets)
		clear(s.configs)
	}
	for _, p := range msg.GetSecrets() {
		s.secrets[dataKey{p.GetId(), p.GetVersion()}] = p.GetData()
	}
	for _, p := range msg.GetConfigs() {
		s.configs[dataKey{p.GetId(), p.GetVersion()}] = p.GetData()
	}
}

// Secret implements exec.DataSource.
func (s *dataStore) Secret(id string, version uint64) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.secrets[dataKey{id, version}]
	return d, ok
}

// Config implements exec.DataSource.
func (s *dataStore) Config(id string, version uint64) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.configs[dataKey{id, version}]
	return d, ok
}
