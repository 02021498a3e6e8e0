package dashboard

import (
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// Source is what the dashboard needs from a manager: its store's view and
// watch (state.Store), whether it leads, and its node ID.
type Source struct {
	Store interface {
		ViewAndWatch(fn func(tx state.ReadTx)) (<-chan state.Event, func())
	}
	NodeID string
	// IsLeader reports whether this manager leads; nil: never.
	IsLeader func() bool
}

// The view model: compact JSON objects with only what the page shows.
type nodeView struct {
	ID     string            `json:"id"`
	Host   string            `json:"host"`
	Role   string            `json:"role"`
	Status string            `json:"status"`
	Avail  string            `json:"avail"`
	CPUs   float64           `json:"cpus"`
	Mem    int64             `json:"mem"`
	Addr   string            `json:"addr"`
	Msg    string            `json:"msg,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

type serviceView struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Mode        string `json:"mode"`
	Replicas    uint64 `json:"replicas"`
	Image       string `json:"image"`
	SpecVersion uint64 `json:"specVersion"`
	Update      string `json:"update,omitempty"`
	UpdateMsg   string `json:"updateMsg,omitempty"`
}

type taskView struct {
	ID          string `json:"id"`
	Service     string `json:"svc"`
	Node        string `json:"node,omitempty"`
	Slot        uint64 `json:"slot,omitempty"`
	State       string `json:"state"`
	Desired     string `json:"desired"`
	SpecVersion uint64 `json:"v"`
}

func enumName(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }

func viewNode(n *swarmpb.Node) *nodeView {
	d := n.GetDescription()
	return &nodeView{
		ID: n.GetId(), Host: d.GetHostname(),
		Role:   enumName(n.GetRole().String(), "NODE_ROLE_"),
		Status: enumName(n.GetStatus().String(), "NODE_STATUS_"),
		Avail:  enumName(n.GetSpec().GetAvailability().String(), "NODE_AVAILABILITY_"),
		CPUs:   float64(d.GetResources().GetNanoCpus()) / 1e9, Mem: d.GetResources().GetMemoryBytes(),
		Addr: n.GetAddr(), Msg: n.GetStatusMessage(), Labels: n.GetSpec().GetLabels(),
	}
}

func viewService(s *swarmpb.Service) *serviceView {
	sp := s.GetSpec()
	v := &serviceView{
		ID: s.GetId(), Name: sp.GetName(), Mode: enumName(sp.GetMode().String(), "SERVICE_MODE_"),
		Replicas: sp.GetReplicas(), Image: sp.GetContainer().GetImage(), SpecVersion: s.GetSpecVersion(),
		UpdateMsg: s.GetUpdateStatus().GetMessage(),
	}
	if u := s.GetUpdateStatus(); u != nil {
		v.Update = enumName(u.GetUpdateState().String(), "UPDATE_STATE_")
		if u.GetUpdateState() == swarmpb.UpdateState_UPDATE_STATE_UNSPECIFIED {
			v.Update = u.GetState() // written by older managers
		}
	}
	return v
}

// liveTask: the page shows tasks that have not ended; ended ones are history.
func liveTask(t *swarmpb.Task) bool {
	return t.GetStatus().GetState() <= swarmpb.TaskState_TASK_STATE_RUNNING
}

func viewTask(t *swarmpb.Task) *taskView {
	return &taskView{
		ID: t.GetId(), Service: t.GetServiceId(), Node: t.GetNodeId(), Slot: t.GetSlot(),
		State:       enumName(t.GetStatus().GetState().String(), "TASK_STATE_"),
		Desired:     enumName(t.GetDesiredState().String(), "TASK_STATE_"),
		SpecVersion: t.GetSpecVersion(),
	}
}

// meta is sent with every message: where the data comes from.
type meta struct {
	Available bool   `json:"available"`
	Message   string `json:"message,omitempty"`
	NodeID    string `json:"nodeId,omitempty"`
	Leader    bool   `json:"leader"`
	Index     uint64 `json:"index"`
	Cluster   string `json:"cluster,omitempty"`
}

// snapshotMsg is the first message of a stream; diffMsg the ones after.
type snapshotMsg struct {
	Meta     meta           `json:"meta"`
	Nodes    []*nodeView    `json:"nodes"`
	Services []*serviceView `json:"services"`
	Tasks    []*taskView    `json:"tasks"`
}

type diffMsg struct {
	Meta     meta           `json:"meta"`
	Nodes    []*nodeView    `json:"nodes,omitempty"`
	Services []*serviceView `json:"services,omitempty"`
	Tasks    []*taskView    `json:"tasks,omitempty"`
	// Removed IDs, per kind.
	DelNodes    []string `json:"delNodes,omitempty"`
	DelServices []string `json:"delServices,omitempty"`
	DelTasks    []string `json:"delTasks,omitempty"`
}

// subQueue is how many coalesced messages a stream may fall behind before
// it is dropped (the page reconnects to a snapshot).
const subQueue = 64

type sub struct {
	ch     chan []byte // closed when the hub drops the stream
	closed bool
}

// hub keeps the model of one source and fans changes out to the streams.
type hub struct {
	coalesce time.Duration

	mu       sync.Mutex
	src      *Source
	stopSrc  func() // ends the current source's watch goroutine
	gen      uint64 // bumped on every source change, so old goroutines stop writing
	index    uint64
	cluster  string
	token    string
	nodes    map[string]*nodeView
	services map[string]*serviceView
	tasks    map[string]*taskView
	dirtyN   map[string]struct{}
	dirtyS   map[string]struct{}
	dirtyT   map[string]struct{}
	subs     map[*sub]struct{}
	closed   bool
}

func newHub(coalesce time.Duration) *hub {
	h := &hub{coalesce: coalesce, subs: map[*sub]struct{}{}}
	h.resetModel()
	return h
}

func (h *hub) resetModel() {
	h.nodes, h.services, h.tasks = map[string]*nodeView{}, map[string]*serviceView{}, map[string]*taskView{}
	h.dirtyN, h.dirtyS, h.dirtyT = map[string]struct{}{}, map[string]struct{}{}, map[string]struct{}{}
	h.index, h.cluster, h.token = 0, "", ""
}

// setSource switches the hub to src (nil: this node runs no manager). Open
// streams are dropped: their pages reconnect and get the new snapshot.
func (h *hub) setSource(src *Source) {
	h.mu.Lock()
	stop := h.stopSrc
	h.stopSrc = nil
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.gen++
	h.src = src
	h.resetModel()
	h.dropSubsLocked()
	if src == nil {
		return
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	gen := h.gen
	go func() { defer close(exited); h.run(src, gen, done) }()
	h.stopSrc = func() { close(done); <-exited }
}

func (h *hub) close() {
	h.setSource(nil)
	h.mu.Lock()
	h.closed = true
	h.dropSubsLocked()
	h.mu.Unlock()
}

func (h *hub) dropSubsLocked() {
	for s := range h.subs {
		s.closed = true
		close(s.ch)
		delete(h.subs, s)
	}
}

// run loads the store and follows its watch until done. A closed watch
// channel (a snapshot restore replaced the store's state) loads it again.
func (h *hub) run(src *Source, gen uint64, done <-chan struct{}) {
	for {
		var events <-chan state.Event
		var cancel func()
		events, cancel = src.Store.ViewAndWatch(func(tx state.ReadTx) {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.gen != gen {
				return
			}
			h.resetModel()
			h.index = tx.Index()
			if c := tx.Cluster(); c != nil {
				h.cluster, h.token = c.GetId(), c.GetDashboardToken()
			}
			for _, n := range tx.ListNodes() {
				h.nodes[n.GetId()] = viewNode(n)
			}
			for _, s := range tx.ListServices() {
				h.services[s.GetId()] = viewService(s)
			}
			for _, t := range tx.ListTasks() {
				if liveTask(t) {
					h.tasks[t.GetId()] = viewTask(t)
				}
			}
			// Pages opened before the load saw an empty model: start them over.
			h.dropSubsLocked()
		})
		restarted := h.follow(events, gen, done)
		cancel()
		if !restarted {
			return
		}
	}
}

// follow applies events to the model and flushes diffs at most every
// coalesce interval. It returns true when the watch ended by itself.
func (h *hub) follow(events <-chan state.Event, gen uint64, done <-chan struct{}) bool {
	var tick <-chan time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-done:
			return false
		case <-tick:
			tick = nil
			h.flush(gen)
		case ev, ok := <-events:
			if !ok {
				return true
			}
			h.mu.Lock()
			if h.gen != gen {
				h.mu.Unlock()
				return false
			}
			h.applyLocked(ev)
			// Drain what is already queued under the same lock: a burst of
			// thousands of events costs one lock round trip.
		drain:
			for i := 0; i < 4096; i++ {
				select {
				case ev, ok := <-events:
					if !ok {
						break drain
					}
					h.applyLocked(ev)
				default:
					break drain
				}
			}
			h.mu.Unlock()
			if tick == nil {
				if timer == nil {
					timer = time.NewTimer(h.coalesce)
				} else {
					timer.Reset(h.coalesce)
				}
				tick = timer.C
			}
		}
	}
}

func (h *hub) applyLocked(ev state.Event) {
	if ev.Index > h.index {
		h.index = ev.Index
	}
	del := ev.Kind == state.EventDelete
	switch o := ev.Object.(type) {
	case *swarmpb.Cluster:
		if !del {
			tok := o.GetDashboardToken()
			if tok != h.token && h.token != "" {
				// A rotation: every session of the old token ends now.
				h.dropSubsLocked()
			}
			h.cluster, h.token = o.GetId(), tok
		}
	case *swarmpb.Node:
		if del {
			delete(h.nodes, o.GetId())
		} else {
			h.nodes[o.GetId()] = viewNode(o)
		}
		h.dirtyN[o.GetId()] = struct{}{}
	case *swarmpb.Service:
		if del {
			delete(h.services, o.GetId())
		} else {
			h.services[o.GetId()] = viewService(o)
		}
		h.dirtyS[o.GetId()] = struct{}{}
	case *swarmpb.Task:
		if del || !liveTask(o) {
			if _, ok := h.tasks[o.GetId()]; !ok {
				return // history changing: nothing the page shows
			}
			delete(h.tasks, o.GetId())
		} else {
			h.tasks[o.GetId()] = viewTask(o)
		}
		h.dirtyT[o.GetId()] = struct{}{}
	}
}

func (h *hub) metaLocked() meta {
	m := meta{Index: h.index, Cluster: h.cluster}
	if h.src == nil {
		m.Message = "this node runs no manager: open the dashboard of a manager"
		return m
	}
	m.Available, m.NodeID = true, h.src.NodeID
	if h.src.IsLeader != nil {
		m.Leader = h.src.IsLeader()
	}
	return m
}

// flush sends the changes since the last flush to every stream.
func (h *hub) flush(gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gen != gen || len(h.dirtyN)+len(h.dirtyS)+len(h.dirtyT) == 0 {
		return
	}
	d := diffMsg{Meta: h.metaLocked()}
	for id := range h.dirtyN {
		if v, ok := h.nodes[id]; ok {
			d.Nodes = append(d.Nodes, v)
		} else {
			d.DelNodes = append(d.DelNodes, id)
		}
	}
	for id := range h.dirtyS {
		if v, ok := h.services[id]; ok {
			d.Services = append(d.Services, v)
		} else {
			d.DelServices = append(d.DelServices, id)
		}
	}
	for id := range h.dirtyT {
		if v, ok := h.tasks[id]; ok {
			d.Tasks = append(d.Tasks, v)
		} else {
			d.DelTasks = append(d.DelTasks, id)
		}
	}
	clear(h.dirtyN)
	clear(h.dirtyS)
	clear(h.dirtyT)
	if len(h.subs) == 0 {
		return
	}
	b, err := json.Marshal(d)
	if err != nil {
		return // cannot happen: plain structs
	}
	for s := range h.subs {
		select {
		case s.ch <- b:
		default:
			// Too far behind: drop it; the page reconnects to a snapshot.
			s.closed = true
			close(s.ch)
			delete(h.subs, s)
		}
	}
}

// subscribe returns the current snapshot and a stream of later diffs, and
// the token in force when the snapshot was taken (streams are dropped when
// it changes).
func (h *hub) subscribe() (snapshot []byte, s *sub, token string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	snap := snapshotMsg{Meta: h.metaLocked(),
		Nodes:    sortedViews(h.nodes, func(v *nodeView) string { return v.ID }),
		Services: sortedViews(h.services, func(v *serviceView) string { return v.ID }),
		Tasks:    sortedViews(h.tasks, func(v *taskView) string { return v.ID }),
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return nil, nil, "", err
	}
	s = &sub{ch: make(chan []byte, subQueue)}
	if h.closed {
		close(s.ch)
		return b, s, h.token, nil
	}
	h.subs[s] = struct{}{}
	return b, s, h.token, nil
}

func (h *hub) unsubscribe(s *sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
		delete(h.subs, s)
	}
}

// currentToken is the login token in force ("" when none was created or
// this node runs no manager).
func (h *hub) currentToken() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.token
}

func sortedViews[T any](m map[string]T, id func(T) string) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return id(out[i]) < id(out[j]) })
	return out
}
