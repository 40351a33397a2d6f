package intents

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/policy"
)

const gossipKind = gossip.KindIntents

// HandleMessage is the gossip.Handler for gossip.KindIntents. It never blocks: the
// payload is queued for the service's loop, or dropped (and counted) when the queue is
// full; anti-entropy repairs what a drop loses.
func (s *Service) HandleMessage(from string, payload []byte) {
	s.enqueue(inEvent{from: from, payload: payload})
}

// LocalState implements gossip.StateExchange: the digest of the store (names and
// versions, tombstones included) as bucket summaries (see digest).
func (s *Service) LocalState() []byte {
	snap := s.snap.Load()
	d := digest{Count: len(snap.names), Buckets: snap.bucketsOf(digestBucketCount(len(snap.names)))}
	b, err := encodeDigest(d)
	if err != nil {
		s.log.Error("encode digest", "err", err)
		return nil
	}
	return b
}

// MergeRemoteState implements gossip.StateExchange. It copies and queues the digest.
func (s *Service) MergeRemoteState(from string, state []byte) {
	s.enqueue(inEvent{from: from, payload: append([]byte(nil), state...), digest: true})
}

// Byte bounds of the queues, on top of their lengths: a burst of 4 MiB messages must
// not take the node's memory.
const (
	maxInboxBytes  = 64 << 20
	maxOutboxBytes = 128 << 20
)

func (s *Service) enqueue(ev inEvent) {
	n := int64(len(ev.payload))
	if s.inBytes.Add(n) > maxInboxBytes {
		s.inBytes.Add(-n)
		s.m.dropped.Inc()
		return
	}
	select {
	case s.inbox <- ev:
	default:
		s.inBytes.Add(-n)
		s.m.dropped.Inc()
	}
}

// send queues payload for to over a reliable message.
func (s *Service) send(to string, payload []byte) {
	s.queueOut(outEvent{to: to, payload: payload})
}

// reply queues payload for to as the answer to a message to just sent (its push/pull
// digest, or its fetch). That message proves to is up, so the answer must reach it
// also while this node's memberlist still holds it dead (see deliver).
func (s *Service) reply(to string, payload []byte) {
	s.queueOut(outEvent{to: to, payload: payload, reply: true})
}

func (s *Service) queueOut(o outEvent) {
	if s.cfg.Gossip == nil || o.to == s.node {
		return
	}
	n := int64(len(o.payload))
	if s.outBytes.Add(n) > maxOutboxBytes {
		s.outBytes.Add(-n)
		s.m.dropped.Inc()
		return
	}
	select {
	case s.outbox <- o:
	default:
		s.outBytes.Add(-n)
		s.m.dropped.Inc()
	}
}

// deliver sends one queued message (called by the sender goroutines). A reply goes
// by ReplyReliable, which reaches a member this node's memberlist still holds dead.
// Right after a restart, a wipe or a healed partition one side may still hold the
// other dead (until the refutations spread), and that is exactly when the push/pull
// digests that repair the node arrive: SendReliable would refuse the fetch, or its
// answer ("no such live member"), and as the fetch stays pending, the same versions
// offered by every other peer of the same join would be ignored until a later
// push/pull round, 10 s or more later.
func (s *Service) deliver(o outEvent) error {
	if o.reply {
		return s.cfg.Gossip.ReplyReliable(o.to, gossipKind, o.payload)
	}
	return s.cfg.Gossip.SendReliable(o.to, gossipKind, o.payload)
}

func (s *Service) receiveLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-s.inbox:
			s.inBytes.Add(-int64(len(ev.payload)))
			s.handle(ev)
		}
	}
}

func (s *Service) handle(ev inEvent) {
	if ev.digest {
		d, err := decodeDigest(ev.payload)
		if err != nil {
			s.m.received.WithLabelValues("invalid").Inc()
			s.log.Debug("undecodable intent digest", "from", ev.from, "err", err)
			return
		}
		s.m.received.WithLabelValues("digest").Inc()
		if len(d.Entries) > 0 {
			s.onDigest(ev.from, d.Entries) // a node of an older version: every name
		}
		if len(d.Buckets) > 0 {
			s.onBuckets(ev.from, d.Buckets)
		}
		return
	}
	msg, err := decodeMsg(ev.payload)
	if err != nil {
		s.m.received.WithLabelValues("invalid").Inc()
		s.log.Debug("undecodable intent message", "from", ev.from, "err", err)
		return
	}
	switch m := msg.(type) {
	case *announce:
		s.m.received.WithLabelValues("announce").Inc()
		if s.wants(m.Name, m.Version) {
			// Not a reply: a broadcast announcement may have been relayed long after
			// its origin went away.
			s.requestFetch(ev.from, []string{m.Name}, []policy.Version{m.Version}, false)
		} else if e, ok := s.snap.Load().byName[m.Name]; ok && policy.Compare(e.rec.Version, m.Version) >= 0 {
			// Already stored: tell the announcer, whose WaitFleet may be counting.
			if b, err := encodeMsg(msgAck, acks{Acks: []ack{{Name: m.Name, Version: e.rec.Version}}}); err == nil {
				s.send(ev.from, b)
			}
		}
	case *fetch:
		s.m.received.WithLabelValues("fetch").Inc()
		s.answerFetch(ev.from, m.Names)
	case *records:
		s.m.received.WithLabelValues("records").Inc()
		for i := range m.Records {
			s.storeRemote(&m.Records[i])
		}
	case *acks:
		s.m.received.WithLabelValues("ack").Inc()
		for _, a := range m.Acks {
			s.noteAck(a.Name, ev.from, a.Version)
		}
	case *bucketsReq:
		s.m.received.WithLabelValues("buckets_req").Inc()
		s.answerBuckets(ev.from, m)
	case *bucketEntries:
		s.m.received.WithLabelValues("buckets").Inc()
		s.onDigest(ev.from, m.Entries)
	}
}

// onBuckets compares a peer's digest summary with this store's in the same number of
// buckets and asks the peer, as a reply, for the entries of the buckets that differ:
// there one side holds a name the other lacks, or a different version of it.
func (s *Service) onBuckets(from string, theirs []uint64) {
	mine := s.snap.Load().bucketsOf(len(theirs))
	var differ []uint32
	for i := range theirs {
		if theirs[i] != mine[i] {
			differ = append(differ, uint32(i))
		}
	}
	if len(differ) == 0 {
		return
	}
	b, err := encodeMsg(msgBucketsReq, bucketsReq{N: len(theirs), Buckets: differ})
	if err != nil {
		s.log.Error("encode digest bucket request", "err", err)
		return
	}
	s.log.Debug("anti-entropy: digest buckets differ", "from", from, "buckets", len(differ), "of", len(theirs))
	s.reply(from, b)
}

// answerBuckets sends, as replies, every name of the asked buckets with its version,
// batched under maxBatchBytes.
func (s *Service) answerBuckets(to string, req *bucketsReq) {
	want := make(map[int]bool, len(req.Buckets))
	for _, i := range req.Buckets {
		want[int(i)] = true
	}
	snap := s.snap.Load()
	var batch []ack
	size := 0
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if b, err := encodeMsg(msgBuckets, bucketEntries{Entries: batch}); err != nil {
			s.log.Error("encode digest buckets", "err", err)
		} else {
			s.reply(to, b)
		}
		batch, size = nil, 0
	}
	for _, name := range snap.names {
		if !want[bucketOf(name, req.N)] {
			continue
		}
		v := snap.byName[name].rec.Version
		if size += len(name) + len(v.Node) + 32; size > maxBatchBytes {
			flush()
			size = len(name) + len(v.Node) + 32
		}
		batch = append(batch, ack{Name: name, Version: v})
	}
	flush()
}

// wants reports whether version v of name is newer than what is stored and not
// already being fetched, and not a version already rejected.
func (s *Service) wants(name string, v policy.Version) bool {
	if !policy.ValidName(name) {
		return false
	}
	if e, ok := s.snap.Load().byName[name]; ok && policy.Compare(v, e.rec.Version) <= 0 {
		return false
	}
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	if s.logged[name+"@"+v.String()] {
		return false
	}
	p, ok := s.pending[name]
	if ok && policy.Compare(v, p.version) <= 0 && s.cfg.Clock().Sub(p.at) < s.cfg.FetchRetry {
		return false
	}
	return true
}

// requestFetch asks from for names and marks them pending; reply sends the request as
// the answer to a message from just sent (its digest).
func (s *Service) requestFetch(from string, names []string, versions []policy.Version, reply bool) {
	now := s.cfg.Clock()
	s.pendMu.Lock()
	for i, n := range names {
		s.pending[n] = pendFetch{version: versions[i], at: now}
	}
	s.pendMu.Unlock()
	for len(names) > 0 {
		k := min(len(names), maxFetchNames)
		b, err := encodeMsg(msgFetch, fetch{Names: names[:k]})
		names = names[k:]
		if err != nil {
			s.log.Error("encode fetch", "err", err)
			return
		}
		s.m.fetches.Inc()
		if reply {
			s.reply(from, b)
		} else {
			s.send(from, b)
		}
	}
}

// answerFetch sends the requested records, batched under maxBatchBytes per message, as
// the reply to the fetch: the asker is up, whatever this node's view says.
func (s *Service) answerFetch(to string, names []string) {
	snap := s.snap.Load()
	var batch []policy.Record
	size := 0
	flush := func() {
		if len(batch) == 0 {
			return
		}
		b, err := encodeMsg(msgRecords, records{Records: batch})
		if err != nil {
			s.log.Error("encode records", "err", err)
		} else {
			s.reply(to, b)
		}
		batch, size = nil, 0
	}
	for _, n := range names {
		e, ok := snap.byName[n]
		if !ok {
			continue
		}
		rs := len(e.rec.Body) + 512
		if size+rs > maxBatchBytes {
			flush()
		}
		batch = append(batch, e.rec)
		size += rs
	}
	flush()
}

// onDigest takes names with the versions a peer stores (an older node's whole digest,
// or the entries of the buckets that differ): it fetches what the peer has newer and
// records what it has stored (acks).
func (s *Service) onDigest(from string, entries []ack) {
	var names []string
	var versions []policy.Version
	for _, e := range entries {
		s.noteAck(e.Name, from, e.Version)
		if s.wants(e.Name, e.Version) {
			names = append(names, e.Name)
			versions = append(versions, e.Version)
		}
	}
	if len(names) > 0 {
		s.log.Debug("anti-entropy: fetching newer intents", "from", from, "count", len(names))
		// A reply: the peer just sent its digest, so it is up even if this node's
		// view still holds it dead (a healed partition, a restart).
		s.requestFetch(from, names, versions, true)
	}
}

// storeRemote verifies and stores a record received from a peer if it is newer than
// the stored one, then acknowledges it to its origin.
func (s *Service) storeRemote(r *policy.Record) {
	s.pendMu.Lock()
	if p, ok := s.pending[r.Name]; ok && policy.Compare(r.Version, p.version) >= 0 {
		delete(s.pending, r.Name)
	}
	bad := s.logged[r.Name+"@"+r.Version.String()]
	s.pendMu.Unlock()
	if bad {
		return
	}
	if e, ok := s.snap.Load().byName[r.Name]; ok && policy.Compare(r.Version, e.rec.Version) <= 0 {
		return // equal or older: never roll back
	}
	// CheckRecord also refuses a signed record whose version is not the one its
	// signature covers: a relay cannot move it to a version that would win.
	in, err := policy.CheckRecord(r, s.trusted, s.cfg.Clock(), s.cfg.MaxClockSkew, s.cfg.MaxSignedSkew)
	if err != nil {
		s.rejectRemote(r, err)
		return
	}
	s.mu.Lock()
	if e, ok := s.entries[r.Name]; ok && policy.Compare(r.Version, e.rec.Version) <= 0 {
		s.mu.Unlock()
		return
	}
	if _, ok := s.entries[r.Name]; !ok && len(s.entries) >= s.cfg.MaxIntents {
		s.mu.Unlock()
		s.rejectRemote(r, errStoreFull)
		return
	}
	rec := *r
	if err := s.disk.put(&rec); err != nil {
		s.mu.Unlock()
		s.log.Error("store intent from peer", "name", r.Name, "err", err)
		return
	}
	s.entries[r.Name] = &entry{rec: rec, intent: in}
	s.clock = policy.Observe(s.clock, rec.Version)
	s.publishLocked()
	s.mu.Unlock()
	s.stored(rec.Name, rec.Version)
	s.m.stores.Inc()
	s.m.lag.Observe(max(s.cfg.Clock().Sub(time.UnixMilli(rec.Version.Wall)).Seconds(), 0))
	if rec.Origin != "" && rec.Origin != s.node {
		if b, err := encodeMsg(msgAck, acks{Acks: []ack{{Name: rec.Name, Version: rec.Version}}}); err == nil {
			s.send(rec.Origin, b)
		}
	}
}

// rejectRemote counts a rejected record and logs it once per name@version. The version
// is not fetched again, unless it was only too far ahead of this node's clock:
// anti-entropy fetches it again, and it is stored once the clock is close enough.
// stored tells Config.OnStored, if set, of a version just stored.
func (s *Service) stored(name string, v policy.Version) {
	if s.cfg.OnStored != nil {
		s.cfg.OnStored(name, v)
	}
}

// errStoreFull: a peer's record for a new name does not fit under MaxIntents. Not
// final: once intents are deleted and their tombstones expire it is fetched again.
var errStoreFull = errors.New("the intent store is full")

func (s *Service) rejectRemote(r *policy.Record, err error) {
	reason := "invalid"
	switch {
	case errors.Is(err, policy.ErrUnsigned), errors.Is(err, policy.ErrUnversioned), errors.Is(err, policy.ErrUntrustedKey), errors.Is(err, policy.ErrBadSignature):
		reason = "signature"
	case errors.Is(err, policy.ErrFuture):
		reason = "future"
	case errors.Is(err, errStoreFull):
		reason = "full"
	}
	s.m.rejectedRemote.WithLabelValues(reason).Inc()
	key := r.Name + "@" + r.Version.String()
	s.pendMu.Lock()
	_, seen := s.logged[key]
	if !seen {
		if len(s.logged) >= 4096 {
			s.logged = map[string]bool{}
		}
		// Refused for good only when the record itself is bad; a future version or a
		// full store may accept it later, so it is fetched again then.
		s.logged[key] = reason == "invalid" || reason == "signature"
	}
	s.pendMu.Unlock()
	if !seen {
		s.log.Warn("rejected intent from peer", "name", r.Name, "version", r.Version.String(), "origin", r.Origin, "reason", reason, "err", err)
	}
}

func (s *Service) noteAck(name, node string, v policy.Version) {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	m, ok := s.acks[name]
	if !ok {
		m = map[string]policy.Version{}
		s.acks[name] = m
	}
	if policy.Compare(v, m[node]) > 0 {
		m[node] = v
		close(s.ackCh)
		s.ackCh = make(chan struct{})
	}
}

// WaitFleet blocks until every alive (or suspect) member has stored at least the given version of
// each name, or ctx ends; then it returns the names of the alive members that have not
// (sorted; nil when all have). Without gossip only this node counts.
func (s *Service) WaitFleet(ctx context.Context, want []Result) []string {
	tick := time.NewTicker(200 * time.Millisecond) // membership may change while we wait
	defer tick.Stop()
	for {
		missing, ch := s.missing(want)
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return missing
		case <-ch:
		case <-tick.C:
		}
	}
}

func (s *Service) missing(want []Result) ([]string, <-chan struct{}) {
	var members []string
	if s.cfg.Gossip != nil {
		for _, m := range s.cfg.Gossip.Members() {
			// A suspect member is not dead: wait for it too, or ?wait=fleet would
			// answer early whenever a busy node is briefly suspected.
			if m.Up() && m.Name != s.node {
				members = append(members, m.Name)
			}
		}
	}
	snap := s.snap.Load()
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	var missing []string
	for _, w := range want {
		if w.Version.IsZero() {
			continue
		}
		if e, ok := snap.byName[w.Name]; !ok || policy.Compare(e.rec.Version, w.Version) < 0 {
			missing = append(missing, s.node) // only after a tombstone GC raced the wait
		}
	}
	for _, m := range members {
		for _, w := range want {
			if w.Version.IsZero() {
				continue
			}
			if policy.Compare(s.acks[w.Name][m], w.Version) < 0 {
				missing = append(missing, m)
				break
			}
		}
	}
	sort.Strings(missing)
	return compact(missing), s.ackCh
}

func compact(xs []string) []string {
	out := xs[:0]
	for i, x := range xs {
		if i == 0 || x != xs[i-1] {
			out = append(out, x)
		}
	}
	return out
}
