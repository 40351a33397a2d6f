package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/murmur-edge/murmur/agent/region"
)

// witnesses runs the witness groups of this node: a region.Node per region whose
// coordinator wants this node as a witness (agent/region/witness.go). Each group
// keeps its log in <data-dir>/witness/<region>, and is started again from there
// after a restart (a witness in a configuration must come back to vote). A group
// unwanted for region.RetireAfter is stopped and its directory removed.
type witnesses struct {
	a    *Agent
	duty *region.WitnessDuty
	kick chan struct{} // cap 1: a group's state changed

	mu     sync.Mutex // guards groups and failed
	groups map[string]*witnessGroup
	failed map[string]time.Time // region → when its group last failed to run
}

// failedRetry is how long a node waits before it runs a failed witness group again.
// Meanwhile the region's coordinator sees (raft.witnessing) that it runs none, and
// replaces it once the dead grace has passed.
const failedRetry = 2 * time.Minute

type witnessGroup struct {
	n      *region.Node
	cancel context.CancelFunc
	done   chan struct{}
}

func newWitnesses(a *Agent) *witnesses {
	return &witnesses{
		a:      a,
		duty:   region.NewWitnessDuty(a.id.ID, a.cfg.Region, a.cfg.CoordinatorEligible && !a.cfg.NoWitness),
		kick:   make(chan struct{}, 1),
		groups: map[string]*witnessGroup{},
		failed: map[string]time.Time{},
	}
}

func (w *witnesses) dir(r string) string { return filepath.Join(w.a.cfg.DataDir, "witness", r) }

// resume starts the groups whose directories a previous run left.
func (w *witnesses) resume(ctx context.Context) {
	ents, err := os.ReadDir(filepath.Join(w.a.cfg.DataDir, "witness"))
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() && e.Name() != w.a.cfg.Region {
			w.start(ctx, e.Name())
		}
	}
}

// update applies the duty's decision to the fleet view peers.
func (w *witnesses) update(ctx context.Context, peers []region.Peer) {
	w.mu.Lock()
	running := slices.Collect(maps.Keys(w.groups))
	groups := maps.Clone(w.groups)
	w.mu.Unlock()
	for _, g := range groups {
		g.n.UpdatePeers(peers)
	}
	now := w.a.now()
	start, stop := w.duty.Update(peers, running, now)
	for _, r := range start {
		w.mu.Lock()
		at, failed := w.failed[r]
		w.mu.Unlock()
		if failed && now.Sub(at) < failedRetry {
			continue
		}
		w.start(ctx, r)
	}
	for _, r := range stop {
		w.retire(r)
	}
}

func (w *witnesses) start(ctx context.Context, r string) {
	w.mu.Lock()
	_, ok := w.groups[r]
	w.mu.Unlock()
	if ok {
		return
	}
	cfg := region.Config{
		NodeID: w.a.id.ID, Name: w.a.cfg.Name, Region: r, Witness: true, DataDir: w.dir(r),
		Timing: w.a.regionTiming().Dilated(w.a.deps.Dilation), Logger: w.a.log.With("witness_of", r), Clock: w.a.deps.Clock,
		ConnAuth: w.a.raftChan, Mux: w.a.mux, Tick: regionTick(w.a.deps.Dilation),
	}
	if nw := w.a.deps.RaftNetwork; nw != nil {
		cfg.Transport, cfg.Control = nw.Add(w.a.raftAdvertise, r)
	}
	n, err := region.New(cfg)
	if err != nil {
		w.a.log.Error("cannot start a witness group", "region", r, "err", err)
		return
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		w.a.log.Error("cannot start a witness group", "region", r, "err", err)
		return
	}
	gctx, cancel := context.WithCancel(ctx)
	g := &witnessGroup{n: n, cancel: cancel, done: make(chan struct{})}
	changed, unsubscribe := n.Subscribe()
	go func() {
		defer close(g.done)
		defer unsubscribe()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-changed:
					select {
					case w.kick <- struct{}{}:
					default:
					}
				case <-stop:
					return
				}
			}
		}()
		if err := n.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
			w.a.log.Error("witness group failed: this node no longer serves the region as a witness", "region", r, "err", err, "retry_in", failedRetry)
			w.mu.Lock()
			if w.groups[r] == g {
				delete(w.groups, r)
				w.failed[r] = w.a.now()
			}
			w.mu.Unlock()
			w.a.witnessGroups.Set(float64(w.count()))
			select {
			case w.kick <- struct{}{}:
			default:
			}
		}
	}()
	w.mu.Lock()
	w.groups[r] = g
	w.mu.Unlock()
	w.a.witnessGroups.Set(float64(w.count()))
	w.a.log.Info("witness: running a Raft group for another region", "region", r, "dir", cfg.DataDir)
}

// retire stops region r's group and removes its log: the region no longer wants it.
func (w *witnesses) retire(r string) {
	w.mu.Lock()
	g := w.groups[r]
	delete(w.groups, r)
	w.mu.Unlock()
	if g == nil {
		return
	}
	g.cancel()
	<-g.done
	if nw := w.a.deps.RaftNetwork; nw != nil {
		nw.Remove(w.a.raftAdvertise, r)
	}
	if err := os.RemoveAll(w.dir(r)); err != nil {
		w.a.log.Warn("witness: cannot remove the retired group's log", "region", r, "err", err)
	}
	w.a.witnessGroups.Set(float64(w.count()))
	w.a.log.Info("witness: retired (the region no longer lists this node)", "region", r)
}

// stopAll stops every group (agent shutdown), keeping their logs.
func (w *witnesses) stopAll() {
	w.mu.Lock()
	groups := w.groups
	w.groups = map[string]*witnessGroup{}
	w.mu.Unlock()
	for _, g := range groups {
		g.cancel()
	}
	for _, g := range groups {
		<-g.done
	}
}

func (w *witnesses) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.groups)
}

// published merges the gossiped state of every group, and names them in
// region.KeyWitnessing.
func (w *witnesses) published(into map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, 0, len(w.groups))
	for r, g := range w.groups {
		maps.Copy(into, g.n.PublishedState())
		names = append(names, r)
	}
	slices.Sort(names)
	into[region.KeyWitnessing] = strings.Join(names, ",")
}

// groupOf returns the group of region r ("" when none).
func (w *witnesses) groupOf(r string) *region.Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	if g := w.groups[r]; g != nil {
		return g.n
	}
	return nil
}

// checkWitnessFor validates --witness-for.
func checkWitnessFor(own string, rs []string) error {
	for _, r := range rs {
		if !dnsLabel.MatchString(r) {
			return fmt.Errorf("%q must be a region name (a DNS label)", r)
		}
		if r == own {
			return fmt.Errorf("%q is this node's own region: a witness serves other regions", r)
		}
	}
	return nil
}
