package gossip

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"

	"github.com/hashicorp/memberlist"
)

// delegate adapts memberlist's Delegate to Gossip. Every method returns at once:
// bytes are copied and queued for the dispatch loop; a full queue drops and counts.
type delegate struct{ g *Gossip }

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte {
	if len(d.g.meta) > limit {
		return nil // New checked the size against memberlist's limit; never reached
	}
	return d.g.meta
}

func (d *delegate) NotifyMsg(b []byte) {
	d.g.enqueue(inbound{data: slices.Clone(b)})
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	out := d.g.queue.GetBroadcasts(overhead, limit)
	for _, b := range out {
		if len(b) > 0 {
			d.g.metrics.sent(frameName(b[0]), len(b))
		}
	}
	return out
}

func (d *delegate) LocalState(join bool) []byte { return d.g.localPushPull() }

func (d *delegate) MergeRemoteState(b []byte, join bool) {
	d.g.enqueue(inbound{data: slices.Clone(b), pushPull: true})
}

func (g *Gossip) enqueue(in inbound) {
	select {
	case g.inbound <- in:
	default:
		g.metrics.dropped.WithLabelValues("inbound_queue_full").Inc()
	}
}

// eventDelegate adapts memberlist's EventDelegate: it copies the node and queues it.
type eventDelegate struct{ g *Gossip }

var _ memberlist.EventDelegate = (*eventDelegate)(nil)

func (e *eventDelegate) NotifyJoin(n *memberlist.Node)   { e.push(n, StatusAlive) }
func (e *eventDelegate) NotifyUpdate(n *memberlist.Node) { e.push(n, StatusAlive) }
func (e *eventDelegate) NotifyLeave(n *memberlist.Node) {
	status := StatusDead
	if n.State == memberlist.StateLeft {
		status = StatusLeft
	}
	e.push(n, status)
}

func (e *eventDelegate) push(n *memberlist.Node, status string) {
	ev := nodeEvent{name: n.Name, addr: n.Address(), meta: slices.Clone(n.Meta), status: status}
	select {
	case e.g.events <- ev:
	default:
		e.g.metrics.dropped.WithLabelValues("event_queue_full").Inc()
		e.g.resync.Store(true)
	}
}

// conflictDelegate adapts memberlist's ConflictDelegate; see Gossip.noteConflict.
type conflictDelegate struct{ g *Gossip }

var _ memberlist.ConflictDelegate = (*conflictDelegate)(nil)

func (c *conflictDelegate) NotifyConflict(existing, other *memberlist.Node) {
	c.g.noteConflict(other.Name, other.Address())
}

// broadcast is one queued message; the name lets a newer one replace it.
type broadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}
func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// logWriter turns memberlist's "[LEVEL] memberlist: ..." lines into slog records.
// It also spots memberlist's "Suspect NAME has failed" line, the only sign memberlist
// gives that this node suspects a member, and hands the name to suspect.
type logWriter struct {
	log     *slog.Logger
	suspect func(name string)
}

func (w *logWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError} {
		if i := strings.Index(line, prefix); i >= 0 {
			level = l
			line = strings.TrimSpace(line[i+len(prefix):])
			break
		}
	}
	// memberlist logs every failed probe of a dead peer as an error; that is routine.
	switch {
	case level == slog.LevelError && (strings.Contains(line, "Failed fallback ping") || strings.Contains(line, "Failed to send")):
		level = slog.LevelDebug // every failed probe of a dead peer: routine
	case level == slog.LevelError && strings.Contains(line, "encrypt"):
		level = slog.LevelWarn // a node with the wrong key knocking: its own log says why
	}
	if rest, ok := strings.CutPrefix(strings.TrimPrefix(line, "memberlist: "), "Suspect "); ok && w.suspect != nil {
		if name, _, ok := strings.Cut(rest, " has failed"); ok {
			w.suspect(name)
		}
	}
	w.log.Log(context.Background(), level, strings.TrimPrefix(line, "memberlist: "))
	return len(p), nil
}
