package intents

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"time"

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
//
// An intent whose signature names a version (every intent a node with trusted keys
// accepts) is stored at exactly that version, and only if it is above the version held
// for the name, live or deleted (409 otherwise), and within MaxSignedSkew of this
// node's clock (400 otherwise). The exact record held already (same version, content
// and signature) is "unchanged", so a retry succeeds. Other intents get a version
// minted here, also when their content equals the stored copy (result "unchanged"):
// the copy may be stale, and the write must win over any acknowledged before it.
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
			if _, err := s.trusted.VerifyVersioned(b, in.Signature); err != nil {
				sigProblems = append(sigProblems, policy.Problem{Field: fieldFor(len(ins), i, signatureField(err)), Message: err.Error()})
				continue
			}
		}
		if in.Signature != nil && in.Signature.Version != "" {
			v, err := in.Signature.SignedVersion()
			if err != nil { // Parse checked it already
				return nil, reject(http.StatusBadRequest, "invalid intent", policy.Problem{Field: fieldFor(len(ins), i, "signature.version"), Message: err.Error()})
			}
			preps[i].signed, preps[i].version = true, v
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
	for _, r := range stored {
		s.stored(r.Name, r.Version)
	}
	s.announceAll(stored) // after the lock: it calls into gossip
	return results, nil
}

// signatureField is the field a signature problem is reported at.
func signatureField(err error) string {
	if errors.Is(err, policy.ErrUnversioned) {
		return "signature.version"
	}
	return "signature"
}

type prepared struct {
	in   *policy.Intent
	body []byte
	hash string
	// signed: the intent carries a signed version, stored as is (not minted).
	signed  bool
	version policy.Version
}

// sameRecord reports whether the stored record is exactly the signed intent p: same
// version, content and signature. Such a request is a retry, answered "unchanged".
func sameRecord(rec policy.Record, p prepared) bool {
	return !rec.Deleted && rec.Version == p.version && rec.Hash == p.hash && sameSignature(rec.Signature, p.in.Signature)
}

func sameSignature(a, b *policy.Signature) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// signedOrderProblem checks a signed version against the version held for the name
// (live or deleted; zero when none) and this node's clock. It returns the HTTP status
// and the message of the problem, or 0.
func (s *Service) signedOrderProblem(name string, v, held policy.Version, deleted bool, now time.Time) (int, string) {
	if !held.IsZero() && policy.Compare(v, held) <= 0 {
		what := "holds"
		if deleted {
			what = "holds a delete of"
		}
		return http.StatusConflict, fmt.Sprintf("signed version %s is not above version %s, which this node %s %q: an older signed record is never accepted again; "+
			"sign the intent again with a newer version (murmur apply/delete --sign-key picks one above the version the node holds)", v, held, what, name)
	}
	nowMs := now.UnixMilli()
	if ahead := v.Wall - nowMs; ahead > s.cfg.MaxSignedSkew.Milliseconds() {
		return http.StatusBadRequest, fmt.Sprintf("signed version %s is %s ahead of this node's clock; at most %s is accepted: fix the clock that is wrong (the signer's or this node's) and sign again",
			v, millis(ahead), s.cfg.MaxSignedSkew)
	}
	// Behind: a signed version older than the tombstone TTL could be a deleted intent
	// whose tombstone is gone; refuse it, so replay stays impossible after the TTL too.
	maxBehind := min(s.cfg.MaxSignedSkew, s.cfg.TombstoneTTL)
	if behind := nowMs - v.Wall; behind >= maxBehind.Milliseconds() {
		return http.StatusBadRequest, fmt.Sprintf("signed version %s is %s behind this node's clock; at most %s is accepted (an older signed record could be the replay of a deleted intent): fix the clock that is wrong (the signer's or this node's) and sign again",
			v, millis(behind), maxBehind)
	}
	return 0, ""
}

// millis is ms milliseconds as a Duration, saturated instead of overflowing.
func millis(ms int64) time.Duration {
	if ms > math.MaxInt64/int64(time.Millisecond) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ms) * time.Millisecond
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
	now := s.cfg.Clock()
	var admission, conflicts, badVersions, staleVersions policy.Problems
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
		if !p.signed || ok && sameRecord(e.rec, p) {
			continue
		}
		var held policy.Version
		if ok {
			held = e.rec.Version
		}
		switch status, msg := s.signedOrderProblem(p.in.Name(), p.version, held, ok && e.rec.Deleted, now); status {
		case http.StatusConflict:
			staleVersions = append(staleVersions, policy.Problem{Field: fieldFor(docs, i, "signature.version"), Message: msg})
		case http.StatusBadRequest:
			badVersions = append(badVersions, policy.Problem{Field: fieldFor(docs, i, "signature.version"), Message: msg})
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
	if len(badVersions) > 0 {
		s.m.rejected.WithLabelValues("version").Inc()
		return nil, nil, reject(http.StatusBadRequest, "signed version too far from this node's clock", badVersions...)
	}
	if len(staleVersions) > 0 {
		s.m.rejected.WithLabelValues("stale").Inc()
		return nil, nil, reject(http.StatusConflict, "signed version not newer than the stored one", staleVersions...)
	}
	if len(s.entries)+newNames > s.cfg.MaxIntents {
		s.m.rejected.WithLabelValues("full").Inc()
		return nil, nil, reject(http.StatusInsufficientStorage, fmt.Sprintf("the intent store holds %d intents and tombstones; the limit is %d: delete unused intents", len(s.entries), s.cfg.MaxIntents))
	}

	results := make([]Result, len(preps))
	var stored []policy.Record
	for i, p := range preps {
		name := p.in.Name()
		old, had := s.entries[name]
		res := Result{Name: name, Kind: p.in.Kind, Result: "created"}
		if had && !old.rec.Deleted {
			res.Result = "updated"
			if p.signed && sameRecord(old.rec, p) {
				res.Result = "unchanged" // a retry of the signed record held
				res.Version = old.rec.Version
				results[i] = res
				continue
			}
			if !p.signed && old.rec.Hash == p.hash && sameSigner(old.rec.Signature, p.in.Signature) {
				// The same content, but stamped anew: this node's copy may be stale (it
				// was cut off while another node stored a different spec), and a write
				// acknowledged now must order after any acknowledged before it. The
				// instances are not restarted: their spec (RunHash) is the same.
				res.Result = "unchanged"
			}
		}
		v := p.version
		if !p.signed {
			v = policy.NextVersion(s.clock, now, s.node)
		}
		rec := policy.Record{Name: name, Kind: p.in.Kind, Version: v, Hash: p.hash, Origin: s.node, Body: p.body, Signature: p.in.Signature}
		if err := s.disk.put(&rec); err != nil {
			s.publishLocked()
			return nil, nil, fmt.Errorf("store intent %s: %w", name, err)
		}
		s.clock = policy.Observe(s.clock, v) // minted versions from here on are above it
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
// signature of the delete at the version it names (policy.SignTombstone). A signature
// that names a version (on any node) makes the tombstone's version that one, under the
// rules of Apply: above the held version (409 otherwise), within MaxSignedSkew of this
// node's clock (400), and the exact tombstone held already answers "deleted" again.
func (s *Service) Delete(name string, sig *policy.Signature) (Result, error) {
	if !policy.ValidName(name) {
		return Result{}, reject(http.StatusBadRequest, "invalid name", policy.Problem{Field: "name", Message: fmt.Sprintf("%q is not a DNS label", name)})
	}
	var signedV policy.Version
	signed := sig != nil && sig.Version != ""
	if signed {
		v, err := sig.SignedVersion()
		if err != nil {
			return Result{}, reject(http.StatusBadRequest, "invalid signature header", policy.Problem{Field: SignatureHeader, Message: err.Error()})
		}
		signedV = v
	}
	if len(s.trusted) > 0 {
		if _, err := s.trusted.VerifyVersioned(policy.TombstoneBytes(name), sig); err != nil {
			s.m.rejected.WithLabelValues("signature").Inc()
			return Result{}, reject(http.StatusForbidden, "delete not signed by a trusted key", policy.Problem{Field: SignatureHeader, Message: err.Error()})
		}
	}
	s.mu.Lock()
	e, ok := s.entries[name]
	if ok && e.rec.Deleted && signed && e.rec.Version == signedV && sameSignature(e.rec.Signature, sig) {
		// A retry of the delete this node holds: answer it again, and announce it so
		// that a ?wait=fleet hears from the nodes that have it.
		rec := e.rec
		s.mu.Unlock()
		s.announceAll([]policy.Record{rec})
		return Result{Name: name, Kind: rec.Kind, Version: rec.Version, Result: "deleted"}, nil
	}
	if !ok || e.rec.Deleted {
		s.mu.Unlock()
		msg := fmt.Sprintf("intent %q not found", name)
		if ok {
			msg += fmt.Sprintf(" (deleted at version %s)", e.rec.Version)
		}
		return Result{}, reject(http.StatusNotFound, msg)
	}
	now := s.cfg.Clock()
	v := signedV
	if signed {
		if status, msg := s.signedOrderProblem(name, signedV, e.rec.Version, false, now); status != 0 {
			s.mu.Unlock()
			reason := "stale"
			if status == http.StatusBadRequest {
				reason = "version"
			}
			s.m.rejected.WithLabelValues(reason).Inc()
			return Result{}, reject(status, "signed delete refused", policy.Problem{Field: SignatureHeader, Message: msg})
		}
	} else {
		v = policy.NextVersion(s.clock, now, s.node)
	}
	rec := policy.Record{Name: name, Kind: e.rec.Kind, Version: v, Hash: policy.Hash(policy.TombstoneBytes(name)), Origin: s.node, Deleted: true, Signature: sig}
	if err := s.disk.put(&rec); err != nil {
		s.mu.Unlock()
		return Result{}, fmt.Errorf("store tombstone %s: %w", name, err)
	}
	s.clock = policy.Observe(s.clock, v)
	s.entries[name] = &entry{rec: rec}
	s.publishLocked()
	s.mu.Unlock()
	s.stored(name, v)
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
