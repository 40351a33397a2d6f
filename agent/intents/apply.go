package intents

import (
	"math/rand/v2"

	"errors"
	"fmt"
	"net/http"

	"github.com/murmur-edge/murmur/policy"
)

// RequestError is a rejected request: the HTTP status and the problems, by field.
// Nothing of a rejected request is stored or disseminated.
type RequestError struct {
	Status   int
	Message  string
	Problems policy.Problems
}

func (e *RequestError) Error() string {
	if len(e.Problems) == 0 {
		return e.Message
	}
	return e.Message + ": " + e.Problems.Error()
}

func reject(status int, msg string, ps ...policy.Problem) *RequestError {
	return &RequestError{Status: status, Message: msg, Problems: ps}
}

// Apply validates, verifies, admits and stores the intents of one request body (YAML or
// JSON, one or many documents), durably, and only then returns. Either every intent of
// the request is accepted or none is (a failed disk write is the exception: it is
// reported as a 500 and intents written before it stay). Rejections are
// *RequestError. Accepted changes are then announced by gossip.
func (s *Service) Apply(body []byte) ([]Result, error) {
	ins, err := policy.Parse(body)
	if err != nil {
		var ps policy.Problems
		if errors.As(err, &ps) {
			s.m.rejected.WithLabelValues("invalid").Inc()
			return nil, reject(http.StatusBadRequest, "invalid intent", ps...)
		}
		return nil, reject(http.StatusBadRequest, err.Error())
	}
	preps := make([]prepared, len(ins))
	var sigProblems policy.Problems
	for i := range ins {
		in := &ins[i]
		b, err := policy.Canonical(in)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", in.Name(), err)
		}
		preps[i] = prepared{in: in, body: b, hash: policy.Hash(b)}
		if len(s.trusted) > 0 {
			if err := s.trusted.Verify(b, in.Signature); err != nil {
				sigProblems = append(sigProblems, policy.Problem{Field: fieldFor(len(ins), i, "signature"), Message: err.Error()})
			}
		}
	}
	if len(sigProblems) > 0 {
		s.m.rejected.WithLabelValues("signature").Inc()
		return nil, reject(http.StatusForbidden, "intent not signed by a trusted key", sigProblems...)
	}

	s.mu.Lock()
	results, stored, err := s.storeLocked(preps, len(ins))
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.announceAll(stored) // after the lock: it calls into gossip
	return results, nil
}

type prepared struct {
	in   *policy.Intent
	body []byte
	hash string
}

// storeLocked admits and durably stores prepared intents. Needs s.mu.
func (s *Service) storeLocked(preps []prepared, docs int) ([]Result, []policy.Record, error) {
	// Admission: the policies in force are the stored ones, replaced or extended by the
	// policies of this request.
	policies := map[string]*policy.Intent{}
	for n, e := range s.entries {
		if e.intent != nil && e.intent.Policy != nil {
			policies[n] = e.intent
		}
	}
	for _, p := range preps {
		if p.in.Policy != nil {
			policies[p.in.Name()] = p.in
		} else {
			delete(policies, p.in.Name())
		}
	}
	inForce := make([]*policy.Intent, 0, len(policies))
	for _, p := range policies {
		inForce = append(inForce, p)
	}
	var admission, conflicts policy.Problems
	newNames := 0
	for i, p := range preps {
		for _, pr := range policy.Admit(p.in, inForce) {
			admission = append(admission, policy.Problem{Field: fieldFor(docs, i, pr.Field), Message: pr.Message})
		}
		e, ok := s.entries[p.in.Name()]
		switch {
		case !ok:
			newNames++
		case !e.rec.Deleted && e.rec.Kind != p.in.Kind:
			conflicts = append(conflicts, policy.Problem{Field: fieldFor(docs, i, "kind"),
				Message: fmt.Sprintf("%q is stored as a %s; delete it first to reuse the name for a %s", p.in.Name(), e.rec.Kind, p.in.Kind)})
		}
	}
	if len(admission) > 0 {
		s.m.rejected.WithLabelValues("admission").Inc()
		return nil, nil, reject(http.StatusForbidden, "intent not admitted by the policies in force", admission...)
	}
	if len(conflicts) > 0 {
		s.m.rejected.WithLabelValues("conflict").Inc()
		return nil, nil, reject(http.StatusConflict, "intent name in use by another kind", conflicts...)
	}
	if len(s.entries)+newNames > s.cfg.MaxIntents {
		s.m.rejected.WithLabelValues("full").Inc()
		return nil, nil, reject(http.StatusInsufficientStorage, fmt.Sprintf("the intent store holds %d intents and tombstones; the limit is %d: delete unused intents", len(s.entries), s.cfg.MaxIntents))
	}

	now := s.cfg.Clock()
	results := make([]Result, len(preps))
	var stored []policy.Record
	for i, p := range preps {
		name := p.in.Name()
		old, had := s.entries[name]
		res := Result{Name: name, Kind: p.in.Kind, Result: "created"}
		if had && !old.rec.Deleted {
			res.Result = "updated"
			if old.rec.Hash == p.hash && sameSigner(old.rec.Signature, p.in.Signature) {
				res.Result = "unchanged"
				res.Version = old.rec.Version
				results[i] = res
				continue
			}
		}
		v := policy.NextVersion(s.clock, now, s.node)
		rec := policy.Record{Name: name, Kind: p.in.Kind, Version: v, Hash: p.hash, Origin: s.node, Body: p.body, Signature: p.in.Signature}
		if err := s.disk.put(&rec); err != nil {
			s.publishLocked()
			return nil, nil, fmt.Errorf("store intent %s: %w", name, err)
		}
		s.clock = v
		s.entries[name] = &entry{rec: rec, intent: p.in}
		res.Version = v
		results[i] = res
		stored = append(stored, rec)
		s.m.applied.WithLabelValues(res.Result).Inc()
	}
	if len(stored) > 0 {
		s.publishLocked()
	}
	return results, stored, nil
}

// Delete writes a tombstone for name. With trusted keys, sig must be a trusted
// signature over policy.TombstoneBytes(name).
func (s *Service) Delete(name string, sig *policy.Signature) (Result, error) {
	if !policy.ValidName(name) {
		return Result{}, reject(http.StatusBadRequest, "invalid name", policy.Problem{Field: "name", Message: fmt.Sprintf("%q is not a DNS label", name)})
	}
	if len(s.trusted) > 0 {
		if err := s.trusted.Verify(policy.TombstoneBytes(name), sig); err != nil {
			s.m.rejected.WithLabelValues("signature").Inc()
			return Result{}, reject(http.StatusForbidden, "delete not signed by a trusted key", policy.Problem{Field: "signature", Message: err.Error()})
		}
	}
	s.mu.Lock()
	e, ok := s.entries[name]
	if !ok || e.rec.Deleted {
		s.mu.Unlock()
		return Result{}, reject(http.StatusNotFound, fmt.Sprintf("intent %q not found", name))
	}
	v := policy.NextVersion(s.clock, s.cfg.Clock(), s.node)
	rec := policy.Record{Name: name, Kind: e.rec.Kind, Version: v, Hash: policy.Hash(policy.TombstoneBytes(name)), Origin: s.node, Deleted: true, Signature: sig}
	if err := s.disk.put(&rec); err != nil {
		s.mu.Unlock()
		return Result{}, fmt.Errorf("store tombstone %s: %w", name, err)
	}
	s.clock = v
	s.entries[name] = &entry{rec: rec}
	s.publishLocked()
	s.mu.Unlock()
	s.m.applied.WithLabelValues("deleted").Inc()
	s.announceAll([]policy.Record{rec})
	return Result{Name: name, Kind: rec.Kind, Version: v, Result: "deleted"}, nil
}

func sameSigner(a, b *policy.Signature) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.KeyID == b.KeyID
}

func fieldFor(docs, i int, field string) string {
	if docs <= 1 {
		return field
	}
	if field == "" {
		return fmt.Sprintf("documents[%d]", i)
	}
	return fmt.Sprintf("documents[%d].%s", i, field)
}

// announceAll broadcasts {name, version, hash} of each record, and pushes small
// records directly to (up to EagerPushNodes random) alive members. Never call with
// s.mu held.
func (s *Service) announceAll(recs []policy.Record) {
	if s.cfg.Gossip == nil {
		return
	}
	var peers []string
	for _, m := range s.cfg.Gossip.Members() {
		if m.Up() && m.Name != s.node {
			peers = append(peers, m.Name)
		}
	}
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	if len(peers) > s.cfg.EagerPushNodes {
		peers = peers[:s.cfg.EagerPushNodes]
	}
	for _, r := range recs {
		ann, err := encodeMsg(msgAnnounce, announce{Name: r.Name, Version: r.Version, Hash: r.Hash})
		if err != nil {
			s.log.Error("encode announcement", "name", r.Name, "err", err)
			continue
		}
		if s.cfg.EagerPushBytes >= 0 {
			// Direct to (some) peers: the record itself when small, else the
			// announcement, so nobody depends on the epidemic alone.
			direct := ann
			if len(r.Body) <= s.cfg.EagerPushBytes {
				if b, err := encodeMsg(msgRecords, records{Records: []policy.Record{r}}); err == nil {
					direct = b
				}
			}
			for _, p := range peers {
				s.send(p, direct)
			}
		}
		if err := s.cfg.Gossip.Broadcast(gossipKind, r.Name, ann); err != nil {
			s.log.Warn("announce intent", "name", r.Name, "err", err)
		}
	}
}
