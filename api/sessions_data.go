package api

import (
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// The contents of secrets and configs reach a node only with the tasks
// that use them: each session message carries the payloads its tasks need
// that the session has not sent yet (a full message starts a new session,
// so everything is sent again). A node never receives a secret none of its
// tasks references.

// dataKey is one content version of a secret or config.
type dataKey struct {
	id      string
	version uint64
}

// sentData is what one session has sent, by kind.
type sentData struct {
	secrets, configs map[dataKey]bool
}

func newSentData() *sentData {
	return &sentData{secrets: map[dataKey]bool{}, configs: map[dataKey]bool{}}
}

// needsData reports whether a task may still start a container, and so
// needs its secrets and configs on its node.
func needsData(t *swarmpb.Task) bool {
	return t.GetDesiredState() <= swarmpb.TaskState_TASK_STATE_RUNNING &&
		t.GetStatus().GetState() < swarmpb.TaskState_TASK_STATE_COMPLETE
}

// payloads returns the contents tasks need that sent does not hold yet,
// and records them as sent. A version the store no longer keeps is left
// out: the task then fails on the node, naming what is missing.
func (d *Dispatcher) payloads(sent *sentData, tasks []*swarmpb.Task) (secrets, configs []*swarmpb.DataPayload) {
	var want []*swarmpb.Task
	for _, t := range tasks {
		c := t.GetSpec().GetContainer()
		if needsData(t) && (len(c.GetSecrets()) > 0 || len(c.GetConfigs()) > 0) {
			want = append(want, t)
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	d.Store.View(func(tx state.ReadTx) {
		for _, t := range want {
			for _, r := range t.GetSpec().GetContainer().GetSecrets() {
				secrets = appendPayload(secrets, sent.secrets, secretKind, tx, r.GetSecretId(), r.GetVersion())
			}
			for _, r := range t.GetSpec().GetContainer().GetConfigs() {
				configs = appendPayload(configs, sent.configs, configKind, tx, r.GetConfigId(), r.GetVersion())
			}
		}
	})
	return secrets, configs
}

func appendPayload(out []*swarmpb.DataPayload, sent map[dataKey]bool, k *dataKind, tx state.ReadTx, id string, version uint64) []*swarmpb.DataPayload {
	key := dataKey{id, version}
	if sent[key] {
		return out
	}
	o := k.get(tx, id)
	if o == nil {
		return out
	}
	v := o.find(version)
	if v == nil {
		return out
	}
	sent[key] = true
	return append(out, &swarmpb.DataPayload{Id: id, Version: version, Data: v.Data})
}
