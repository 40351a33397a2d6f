package intents

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/policy"
	"github.com/prometheus/client_golang/prometheus"
)

// Gossip is what the service needs of the gossip layer. *gossip.Gossip satisfies it.
// Fetches driven by a peer's digest and the answers to fetches go by ReplyReliable,
// so they reach a peer this node still holds dead (the message it answers proves the
// peer up).
type Gossip interface {
	Broadcast(kind gossip.MessageKind, key string, payload []byte) error
	SendReliable(node string, kind gossip.MessageKind, payload []byte) error
	ReplyReliable(node string, kind gossip.MessageKind, payload []byte) error
	Members() []gossip.Member
	LocalName() string
}

// Config configures a Service. DataDir and NodeName (or Gossip) are required.
type Config struct {
	// DataDir is the agent's data directory; intents live in DataDir/intents.
	DataDir string
	// NodeName is this node's name, stamped into versions. Default: Gossip.LocalName().
	NodeName string
	// Gossip disseminates intents. Nil runs a single node that disseminates nothing.
	Gossip Gossip
	// TrustKeyFiles are public key files (--trust-key): PEM "PUBLIC KEY" or base64.
	// With at least one key (here or in TrustedKeys) every intent, from the API or from
	// a peer, must be signed by one of them.
	TrustKeyFiles []string
	TrustedKeys   []ed25519.PublicKey
	// TombstoneTTL is how long a delete is remembered. Default 7 days.
	TombstoneTTL time.Duration
	// GCInterval is how often expired tombstones are removed. Default 1 hour.
	GCInterval time.Duration
	// MaxClockSkew bounds how far ahead of this node's clock a peer's version may be.
	// Default 1 minute.
	MaxClockSkew time.Duration
	// MaxSignedSkew bounds the versions signers choose. The API refuses a signed version
	// more than MaxSignedSkew ahead of this node's clock, or more than
	// min(MaxSignedSkew, TombstoneTTL) behind it; a node that trusts keys accepts signed
	// versions from peers up to MaxSignedSkew ahead (and fetches later ones again once
	// its clock is close enough). Default 24 hours.
	MaxSignedSkew time.Duration
	// FetchRetry is how long an outstanding fetch blocks a new fetch of the same name.
	// Default 5 s.
	FetchRetry time.Duration
	// EagerPushBytes: right after an accept, records up to this size are sent directly
	// to up to EagerPushNodes random alive members, and larger records are announced
	// to them directly (they fetch the body), so no node depends on the epidemic spread
	// of the broadcast alone. Default 64 KiB; a negative value turns direct sends off
	// (broadcast announcement, fetch and anti-entropy only).
	EagerPushBytes int
	// EagerPushNodes bounds the members an accepted record is pushed to. Default 64.
	EagerPushNodes int
	// MaxIntents bounds the store (live intents plus tombstones). Default 2000. The
	// push/pull digest does not grow with it beyond 4096 bucket summaries (36 KiB).
	MaxIntents int
	// OnStored, if set, is called after each version stored (from the API or a peer,
	// tombstones included), outside the store's lock. It must not block.
	OnStored func(name string, v policy.Version)
	// Clock returns the time; default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer for metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Result is the outcome of one intent of an Apply or Delete.
type Result struct {
	Name    string         `json:"name"`
	Kind    string         `json:"kind"`
	Version policy.Version `json:"-"`
	Result  string         `json:"result"` // created | updated | unchanged | deleted
}

// entry is one stored record plus its parsed intent (nil for tombstones).
type entry struct {
	rec    policy.Record
	intent *policy.Intent
}

// snapshot is an immutable view of the store for readers.
type snapshot struct {
	byName map[string]*entry
	names  []string // sorted

	bmu     sync.Mutex       // guards buckets
	buckets map[int][]uint64 // digest bucket summaries by bucket count, computed once
}

// bucketsOf returns the digest summary of the snapshot in n buckets (bucketOf,
// entryHash), computed on first use: a snapshot never changes.
func (sn *snapshot) bucketsOf(n int) []uint64 {
	sn.bmu.Lock()
	defer sn.bmu.Unlock()
	if b, ok := sn.buckets[n]; ok {
		return b
	}
	b := make([]uint64, n)
	for _, name := range sn.names {
		b[bucketOf(name, n)] ^= entryHash(name, sn.byName[name].rec.Version)
	}
	if sn.buckets == nil {
		sn.buckets = map[int][]uint64{}
	}
	sn.buckets[n] = b
	return b
}

// Service is one node's intent service: the durable store, the HTTP API, and
// dissemination through gossip. Create it with New, wire its HandleMessage and
// StateExchange into gossip, serve Register's routes, and call Run.
type Service struct {
	cfg     Config
	node    string
	trusted policy.TrustedKeys
	disk    *diskStore
	log     *slog.Logger
	m       *metrics

	inbox    chan inEvent  // from gossip callbacks; bounded, drops counted
	outbox   chan outEvent // reliable sends, done by sender goroutines
	inBytes  atomic.Int64  // payload bytes queued in inbox
	outBytes atomic.Int64  // payload bytes queued in outbox

	snap atomic.Pointer[snapshot]

	// Locks: mu may be held while taking changeMu (publishLocked); pendMu, ackMu and
	// changeMu are leaves. No lock is held while calling gossip.
	mu      sync.Mutex // guards entries, clock and disk writes
	entries map[string]*entry
	clock   policy.Version // highest version seen (HLC state)

	pendMu  sync.Mutex           // guards pending and logged
	pending map[string]pendFetch // name → fetch in flight
	// logged holds the name@version rejections already logged; true when the version is
	// refused for good (never fetched again), false when it may become acceptable (a
	// version ahead of this node's clock).
	logged map[string]bool

	ackMu sync.Mutex                           // guards acks and ackCh
	acks  map[string]map[string]policy.Version // name → node → highest version it stored
	ackCh chan struct{}                        // closed and replaced on every ack

	changeMu sync.Mutex
	changeCh chan struct{} // closed and replaced on every store change
}

type pendFetch struct {
	version policy.Version
	at      time.Time
}

type inEvent struct {
	from    string
	payload []byte
	digest  bool
}

type outEvent struct {
	to      string
	payload []byte
	reply   bool // the answer to a message to just sent: see Service.deliver
}

// New loads trusted keys and the stored intents. It starts nothing.
func New(cfg Config) (*Service, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("intents: DataDir is required")
	}
	if cfg.NodeName == "" && cfg.Gossip != nil {
		cfg.NodeName = cfg.Gossip.LocalName()
	}
	if cfg.NodeName == "" {
		return nil, errors.New("intents: NodeName is required")
	}
	if cfg.TombstoneTTL <= 0 {
		cfg.TombstoneTTL = 7 * 24 * time.Hour
	}
	if cfg.GCInterval <= 0 {
		cfg.GCInterval = time.Hour
	}
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = time.Minute
	}
	if cfg.MaxSignedSkew <= 0 {
		cfg.MaxSignedSkew = 24 * time.Hour
	}
	if cfg.FetchRetry <= 0 {
		cfg.FetchRetry = 5 * time.Second
	}
	if cfg.EagerPushBytes == 0 {
		cfg.EagerPushBytes = 64 << 10
	}
	if cfg.EagerPushNodes <= 0 {
		cfg.EagerPushNodes = 64
	}
	if cfg.MaxIntents <= 0 {
		cfg.MaxIntents = 2000
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	keys := append([]ed25519.PublicKey(nil), cfg.TrustedKeys...)
	for _, f := range cfg.TrustKeyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read --trust-key %s: %w", f, err)
		}
		k, err := policy.ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("--trust-key %s: %w", f, err)
		}
		keys = append(keys, k)
	}
	disk, err := openStore(filepath.Join(cfg.DataDir, "intents"))
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:      cfg,
		node:     cfg.NodeName,
		trusted:  policy.NewTrustedKeys(keys...),
		disk:     disk,
		log:      cfg.Logger.With("component", "intents"),
		inbox:    make(chan inEvent, 1024),
		outbox:   make(chan outEvent, 4096),
		entries:  map[string]*entry{},
		pending:  map[string]pendFetch{},
		logged:   map[string]bool{},
		acks:     map[string]map[string]policy.Version{},
		ackCh:    make(chan struct{}),
		changeCh: make(chan struct{}),
	}
	if s.m, err = newMetrics(cfg.Registerer, s); err != nil {
		return nil, err
	}
	recs, bad, err := disk.load()
	if err != nil {
		return nil, err
	}
	for _, b := range bad {
		s.log.Error("skipped a corrupt intent file (renamed to .corrupt)", "file", b.file, "err", b.err)
	}
	for _, r := range recs {
		e := &entry{rec: r}
		if !r.Deleted {
			in, err := policy.DecodeCanonical(r.Body)
			if err != nil {
				s.log.Error("skipped an invalid stored intent", "name", r.Name, "err", err)
				continue
			}
			in.Signature = r.Signature
			e.intent = &in
		}
		s.entries[r.Name] = e
		s.clock = policy.Observe(s.clock, r.Version)
	}
	s.publishLocked()
	if len(s.trusted) > 0 {
		s.log.Info("intents must be signed", "trusted_keys", s.trusted.IDs())
	}
	return s, nil
}

// Trusted reports the ids of the trusted signing keys (empty: signatures not required).
func (s *Service) Trusted() []string { return s.trusted.IDs() }

// Run serves dissemination and tombstone garbage collection until ctx is cancelled, and
// returns after every goroutine it started has exited.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	const senders = 4
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); s.sendLoop(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.gcLoop(ctx) }()
	s.receiveLoop(ctx)
	wg.Wait()
	return nil
}

func (s *Service) sendLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-s.outbox:
			s.outBytes.Add(-int64(len(o.payload)))
			if s.cfg.Gossip == nil {
				continue
			}
			if err := s.deliver(o); err != nil {
				s.m.sendErrors.Inc()
				s.log.Debug("send to peer failed; anti-entropy will repair", "to", o.to, "err", err)
			}
		}
	}
}

func (s *Service) gcLoop(ctx context.Context) {
	s.collectGarbage()
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.collectGarbage()
		}
	}
}

// collectGarbage removes tombstones older than the TTL.
func (s *Service) collectGarbage() {
	cutoff := s.cfg.Clock().Add(-s.cfg.TombstoneTTL).UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for name, e := range s.entries {
		if !e.rec.Deleted || e.rec.Version.Wall > cutoff {
			continue
		}
		if err := s.disk.remove(name); err != nil {
			s.log.Error("remove expired tombstone", "name", name, "err", err)
			continue
		}
		delete(s.entries, name)
		s.m.gc.Inc()
		changed = true
	}
	if changed {
		s.publishLocked()
	}
}

// publishLocked rebuilds the read snapshot and wakes change watchers. Needs s.mu.
func (s *Service) publishLocked() {
	snap := &snapshot{byName: make(map[string]*entry, len(s.entries))}
	live, dead := map[string]int{}, 0
	for n, e := range s.entries {
		snap.byName[n] = e
		snap.names = append(snap.names, n)
		if e.rec.Deleted {
			dead++
		} else {
			live[e.rec.Kind]++
		}
	}
	sort.Strings(snap.names)
	s.snap.Store(snap)
	s.m.stored.WithLabelValues(policy.KindWorkload).Set(float64(live[policy.KindWorkload]))
	s.m.stored.WithLabelValues(policy.KindPolicy).Set(float64(live[policy.KindPolicy]))
	s.m.stored.WithLabelValues("tombstone").Set(float64(dead))
	s.changeMu.Lock()
	close(s.changeCh)
	s.changeCh = make(chan struct{})
	s.changeMu.Unlock()
}

// Changed returns a channel closed at the next change of the store (for the
// coordinator: wait on it, then read Live again).
func (s *Service) Changed() <-chan struct{} {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	return s.changeCh
}

// Live returns the live (not deleted) Workload and Policy intents, sorted by name. The
// intents are shared and must not be modified.
func (s *Service) Live() (workloads, policies []*policy.Intent) {
	snap := s.snap.Load()
	for _, n := range snap.names {
		e := snap.byName[n]
		if e.intent == nil {
			continue
		}
		switch e.intent.Kind {
		case policy.KindWorkload:
			workloads = append(workloads, e.intent)
		case policy.KindPolicy:
			policies = append(policies, e.intent)
		}
	}
	return workloads, policies
}

// LiveIntent is a live intent with the version it is stored at.
type LiveIntent struct {
	*policy.Intent
	Version policy.Version
}

// LiveVersions is Live with each intent's version, for the coordinator: placements
// carry the version of the spec they run.
func (s *Service) LiveVersions() (workloads, policies []LiveIntent) {
	snap := s.snap.Load()
	for _, n := range snap.names {
		e := snap.byName[n]
		if e.intent == nil {
			continue
		}
		li := LiveIntent{Intent: e.intent, Version: e.rec.Version}
		switch e.intent.Kind {
		case policy.KindWorkload:
			workloads = append(workloads, li)
		case policy.KindPolicy:
			policies = append(policies, li)
		}
	}
	return workloads, policies
}

// Tombstones returns the version of every deleted intent still remembered, by name.
func (s *Service) Tombstones() map[string]policy.Version {
	snap := s.snap.Load()
	out := map[string]policy.Version{}
	for _, n := range snap.names {
		if e := snap.byName[n]; e.rec.Deleted {
			out[n] = e.rec.Version
		}
	}
	return out
}

// Lookup returns the stored intent of name and its version; ok is false when the
// name is unknown or deleted.
func (s *Service) Lookup(name string) (in *policy.Intent, v policy.Version, ok bool) {
	e, found := s.snap.Load().byName[name]
	if !found || e.intent == nil {
		return nil, policy.Version{}, false
	}
	return e.intent, e.rec.Version, true
}

// Records returns every stored record, tombstones included, sorted by name.
func (s *Service) Records() []policy.Record {
	snap := s.snap.Load()
	out := make([]policy.Record, 0, len(snap.names))
	for _, n := range snap.names {
		out = append(out, snap.byName[n].rec)
	}
	return out
}

// Get returns the stored record of name (possibly a tombstone).
func (s *Service) Get(name string) (policy.Record, bool) {
	e, ok := s.snap.Load().byName[name]
	if !ok {
		return policy.Record{}, false
	}
	return e.rec, true
}
