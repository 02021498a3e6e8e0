package exec

// DataSource hands an executor the contents of the secrets and configs
// its node's tasks reference, by object ID and content version. The agent
// keeps them in memory only, as the managers sent them with the tasks.
type DataSource interface {
	Secret(id string, version uint64) ([]byte, bool)
	Config(id string, version uint64) ([]byte, bool)
}

// DataUser is an executor that mounts secrets and configs in containers;
// the agent gives it its DataSource once, before any task runs. An
// executor that does not implement it ignores secrets and configs.
type DataUser interface {
	SetDataSource(DataSource)
}
