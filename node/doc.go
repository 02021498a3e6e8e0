// Package node is the runtime shared by managerd and workerd. A node is
// inactive until init or join; then it always runs an agent (heartbeats to
// the leader, and later the tasks assigned to it) and, while its role is
// manager, a manager.Manager. Role changes happen live: a promoted worker
// renews its certificate and joins Raft, a demoted manager leaves Raft and
// keeps running as a worker. Lifecycle calls arrive on the local unix
// socket (the Local service); Control calls on that socket are relayed to
// the leader.
package node
