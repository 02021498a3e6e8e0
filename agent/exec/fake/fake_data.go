package fake

import "github.com/raftswarm/raftswarm/agent/exec"

var _ exec.DataUser = (*Executor)(nil)

// SetDataSource implements exec.DataUser: the fake engine mounts nothing,
// but keeps the source so tests can see what reached the node.
func (e *Executor) SetDataSource(s exec.DataSource) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.data = s
}

// DataSource returns what the agent gave SetDataSource, or nil.
func (e *Executor) DataSource() exec.DataSource {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.data
}
