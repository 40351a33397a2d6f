package events

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultSize is the number of events a Ring keeps when NewRing is given no size.
const DefaultSize = 4096

// Ring keeps the newest events of one agent in memory. It is safe for concurrent
// use: one mutex guards the buffer, and it is held only for memory operations — no
// I/O, no callbacks, no channel sends that could block.
type Ring struct {
	base  uint64 // IDs of this run are base+1, base+2, ...
	total *prometheus.CounterVec

	mu sync.Mutex
	// guarded by mu:
	buf         []Event       // circular; len(buf) is the ring's size
	head        int           // index of the oldest kept event
	n           int           // kept events
	seq         uint64        // events added in this run; the newest ID is base+seq
	dropped     uint64        // ID of the newest overwritten event, 0 if none
	droppedTime time.Time     // its Time
	wake        chan struct{} // closed by the next Add; nil while nobody waits
}

// NewRing makes a ring of size events (DefaultSize if size <= 0). boot is the time
// this agent started: IDs of this run start above boot.UnixMilli()*1000 (0 when boot
// is before 1970, as in tests with a zero time), so they grow across restarts under
// the assumptions of the package documentation. The counter murmur_events_total{type}
// is registered on reg unless reg is nil; a registry that already holds it (a second
// ring) shares it.
func NewRing(size int, boot time.Time, reg prometheus.Registerer) *Ring {
	if size <= 0 {
		size = DefaultSize
	}
	var base uint64
	if ms := boot.UnixMilli(); ms > 0 {
		base = uint64(ms) * 1000
	}
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "murmur_events_total",
		Help: "Events (scheduling decisions, node and coordinator changes) recorded by this node, by type.",
	}, []string{"type"})
	if reg != nil {
		if err := reg.Register(total); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(fmt.Sprintf("events: register murmur_events_total: %v", err))
			}
			total = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	for _, t := range types {
		total.WithLabelValues(t) // every known type is exported from the start, at 0
	}
	return &Ring{base: base, total: total, buf: make([]Event, size)}
}

// Add records e and returns it with its ID, and its Time if e had none (time.Now:
// sources that have a clock set Time themselves). It never blocks. It panics if
// e.Type is not a ValidType, or is TypeTruncated: sources use the Type constants.
func (r *Ring) Add(e Event) Event {
	if !ValidType(e.Type) || e.Type == TypeTruncated {
		panic(fmt.Sprintf("events: invalid event type %q", e.Type))
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	r.mu.Lock()
	r.seq++
	e.ID = r.base + r.seq
	if r.n == len(r.buf) {
		old := &r.buf[r.head]
		r.dropped, r.droppedTime = old.ID, old.Time
		*old = e
		r.head = (r.head + 1) % len(r.buf)
	} else {
		r.buf[(r.head+r.n)%len(r.buf)] = e
		r.n++
	}
	wake := r.wake
	r.wake = nil
	r.mu.Unlock()
	if wake != nil {
		close(wake)
	}
	r.total.WithLabelValues(e.Type).Inc()
	return e
}

// Wait returns a channel that the next Add closes. To follow the ring without
// missing an event, call Wait before Since, then wait on the channel:
//
//	for {
//		wake := r.Wait()
//		evs, _ := r.Since(cursor, f, 0)
//		... send evs, advance cursor ...
//		select {
//		case <-wake:
//		case <-ctx.Done():
//			return
//		}
//	}
func (r *Ring) Wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wake == nil {
		r.wake = make(chan struct{})
	}
	return r.wake
}

// LastID is the ID of the newest event of this run; before the first Add it is the
// base, below every ID this run will assign.
func (r *Ring) LastID() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.base + r.seq
}

// Since returns the events with an ID above after that match f, oldest first. When
// limit > 0 and more match, it returns the newest limit of them. truncated reports
// that the caller missed events it asked for: the ring already overwrote events
// above after, limit cut older matching ones, or after is above every ID of this
// run (an ID from another run, whose clock was ahead: then every kept event is
// returned).
func (r *Ring) Since(after uint64, f Filter, limit int) (evs []Event, truncated bool) {
	evs, missed, _ := r.since(after, f, limit)
	return evs, missed != ""
}

// since is Since that says why events were missed ("" if none were), and returns
// the newest ID it looked at, where a follower resumes: events up to it that did not
// match f need not be scanned again.
func (r *Ring) since(after uint64, f Filter, limit int) (evs []Event, missed string, last uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	last = r.base + r.seq
	var why []string
	if after > last {
		why = append(why, fmt.Sprintf("id %d is above every event id of this run of the agent (an id from an earlier run whose clock was ahead?): all kept events follow", after))
		after = 0
	} else if after > 0 && after < r.base {
		// An id of an earlier run: what that run recorded after it is gone with its
		// memory (the agent restarted).
		why = append(why, fmt.Sprintf("id %d is from an earlier run of the agent: the events that run recorded after it were lost when it restarted", after))
	}
	if r.dropped > after {
		why = append(why, fmt.Sprintf("events %d to %d are no longer kept: this agent keeps its newest %d events in memory", after+1, r.dropped, len(r.buf)))
	}
	oldest := last - uint64(r.n) + 1 // ID of buf[head] when n > 0: IDs of a run are consecutive
	skip := 0
	if after >= oldest {
		skip = int(after - oldest + 1)
	}
	for i := r.n - 1; i >= skip; i-- {
		e := r.buf[(r.head+i)%len(r.buf)]
		if !f.Match(e) {
			continue
		}
		if limit > 0 && len(evs) == limit {
			why = append(why, fmt.Sprintf("more than limit=%d events match: only the newest %d follow", limit, limit))
			break
		}
		evs = append(evs, e)
	}
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs, strings.Join(why, "; "), last
}

// idBefore returns the ID after which the events at or after t begin, assuming
// event times grow with IDs. When the ring already overwrote events at or after t,
// the answer is below the newest overwritten ID, so Since reports the loss.
func (r *Ring) idBefore(t time.Time) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dropped > 0 && !r.droppedTime.Before(t) {
		return r.dropped - 1
	}
	for i := 0; i < r.n; i++ {
		if e := &r.buf[(r.head+i)%len(r.buf)]; !e.Time.Before(t) {
			return e.ID - 1
		}
	}
	return r.base + r.seq
}
