package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip key rotation, as Serf's KeyManager does it: every node holds a memberlist
// Keyring (primary key first; memberlist encrypts with the primary and decrypts with
// any key of the ring), and an operation given to any node is applied there and sent
// to every live member over the reliable channel (KindKeyring), whose answers carry
// the keys each node holds afterwards. Rotating without downtime is three operations,
// each waiting for the whole fleet before the next:
//
//  1. install NEW  every node can decrypt NEW, still encrypts with OLD;
//  2. use NEW      every node encrypts with NEW (refused while a node lacks NEW);
//  3. remove OLD   (refused while a node still uses OLD as its primary key).
//
// A node persists its keys (Config.PersistKeys) before memberlist's ring changes:
// after a crash in between it restarts with the new keys, which is what the operator
// asked for (and will see when listing), while the other order could restart it with
// a key the fleet has already removed, cut off for good.
//
// Encryption cannot be turned on or off at runtime: memberlist reads "encryption
// enabled" from the ring on every packet, so a node without keys refuses every
// operation (ErrEncryptionOff) rather than start encrypting on its own.

// KeyOp is a keyring operation.
type KeyOp string

// Keyring operations.
const (
	KeyList    KeyOp = "list"
	KeyInstall KeyOp = "install"
	KeyUse     KeyOp = "use"
	KeyRemove  KeyOp = "remove"
)

func (op KeyOp) valid() bool {
	switch op {
	case KeyList, KeyInstall, KeyUse, KeyRemove:
		return true
	}
	return false
}

// Keyring errors, checked with errors.Is.
var (
	// ErrEncryptionOff: the node has no gossip key; memberlist cannot start
	// encrypting while it runs.
	ErrEncryptionOff = errors.New("gossip encryption is off")
	// ErrBadKey: a key is not 16, 24 or 32 bytes.
	ErrBadKey = errors.New("bad gossip key")
	// ErrKeyNotInstalled: use of a key the node does not hold.
	ErrKeyNotInstalled = errors.New("the key is not installed")
	// ErrRemovePrimary: remove of the key the node encrypts with.
	ErrRemovePrimary = errors.New("the key is the primary key")
	// ErrKeyringPartial: the operation failed on some members, or some did not
	// answer in time; the KeyResponse says which.
	ErrKeyringPartial = errors.New("keyring operation failed on some nodes")
)

// MaxKeys bounds the keys of one ring (a rotation needs two).
const MaxKeys = 16

// CheckKey reports whether key is a valid gossip key: 16, 24 or 32 bytes (AES-128,
// -192 or -256).
func CheckKey(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("%w: %d bytes: want 16, 24 or 32 (make one with 'murmur keygen')", ErrBadKey, len(key))
}

// newKeyring returns the ring New hands memberlist: cfg.Keyring, or one made of
// secret, or nil (no encryption).
func newKeyring(secret []byte, ring *memberlist.Keyring) (*memberlist.Keyring, error) {
	if ring != nil {
		if len(secret) > 0 {
			return nil, errors.New("both SecretKey and Keyring are set: put the key in the keyring")
		}
		keys := ring.GetKeys()
		if len(keys) == 0 {
			// memberlist would turn encryption on the moment a key is added.
			return nil, errors.New("the keyring has no key: pass a nil Keyring to run without encryption")
		}
		for _, k := range keys {
			if err := CheckKey(k); err != nil {
				return nil, fmt.Errorf("keyring: %w", err)
			}
		}
		return ring, nil
	}
	if len(secret) == 0 {
		return nil, nil
	}
	if err := CheckKey(secret); err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	return memberlist.NewKeyring(nil, slices.Clone(secret))
}

// NextKeys is the ring that op with key makes of keys (primary first), and whether
// it differs. It is the whole rule of a local keyring change, without I/O.
func NextKeys(keys [][]byte, op KeyOp, key []byte) (next [][]byte, changed bool, err error) {
	if len(keys) == 0 {
		return keys, false, ErrEncryptionOff
	}
	if op == KeyList {
		return keys, false, nil
	}
	if err := CheckKey(key); err != nil {
		return keys, false, err
	}
	i := slices.IndexFunc(keys, func(k []byte) bool { return bytes.Equal(k, key) })
	switch op {
	case KeyInstall:
		if i >= 0 {
			return keys, false, nil
		}
		if len(keys) >= MaxKeys {
			return keys, false, fmt.Errorf("the ring already holds %d keys: remove one first", len(keys))
		}
		return append(slices.Clone(keys), slices.Clone(key)), true, nil
	case KeyUse:
		if i < 0 {
			return keys, false, fmt.Errorf("%w: install it first", ErrKeyNotInstalled)
		}
		if i == 0 {
			return keys, false, nil
		}
		next = append([][]byte{keys[i]}, keys[:i]...)
		return append(next, keys[i+1:]...), true, nil
	case KeyRemove:
		if i == 0 {
			return keys, false, fmt.Errorf("%w: use another key first", ErrRemovePrimary)
		}
		if i < 0 {
			return keys, false, nil
		}
		return slices.Delete(slices.Clone(keys), i, i+1), true, nil
	}
	return keys, false, fmt.Errorf("unknown keyring operation %q: use list, install, use or remove", op)
}

// Keys returns a copy of this node's gossip keys, primary first; nil when gossip
// encryption is off.
func (g *Gossip) Keys() [][]byte {
	if g.keyring == nil {
		return nil
	}
	g.keys.mu.Lock() // RemoveKey rewrites the ring's array in place: read it under the same lock
	defer g.keys.mu.Unlock()
	return cloneKeys(g.keyring.GetKeys())
}

// KeyManager changes the gossip keys of every member of the fleet.
func (g *Gossip) KeyManager() *KeyManager { return g.keys }

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = slices.Clone(k)
	}
	return out
}

// KeyManager applies keyring operations to this node and to every live member. Its
// methods are safe for concurrent use; local changes are serialised.
type KeyManager struct {
	g *Gossip

	mu sync.Mutex // serialises local changes of the ring: compute, persist, apply

	qid     atomic.Uint64
	wmu     sync.Mutex // guards waiters; a leaf lock
	waiters map[uint64]*keyWaiter

	requests chan keyInbound // handler → run loop (bounded; a full queue drops and counts)
}

type keyWaiter struct {
	asked map[string]bool
	ch    chan keyInbound // buffered for every asked node: the handler never blocks
}

type keyInbound struct {
	from string
	req  keyRequest
	resp keyResponse
}

func newKeyManager(g *Gossip) *KeyManager {
	k := &KeyManager{g: g, waiters: make(map[uint64]*keyWaiter), requests: make(chan keyInbound, 64)}
	// Ids start from the clock, so a late answer to a request of an earlier run of
	// this node never matches one of this run's.
	k.qid.Store(uint64(time.Now().UnixNano()))
	return k
}

// KeyResponse is the outcome of a fleet-wide keyring operation.
type KeyResponse struct {
	Op KeyOp
	// Asked are the members asked, this node included: those alive or suspect.
	Asked []string
	// Keys is each answering node's keys after the operation, primary first.
	Keys map[string][][]byte
	// Errors is why the operation failed on a node.
	Errors map[string]string
	// NoAnswer are the asked members that did not answer in time.
	NoAnswer []string
	// Down are the members dead or left, not asked: they need the new keyring by
	// hand if they come back after the old key was removed.
	Down []string
}

// KeyCount is one key of a KeyResponse: how many nodes hold it, and how many
// encrypt with it.
type KeyCount struct {
	Key     []byte
	Nodes   int
	Primary int
}

// Failed is how many asked nodes failed or did not answer.
func (r KeyResponse) Failed() int { return len(r.Errors) + len(r.NoAnswer) }

// Counts returns every key held by an answering node, the most used first.
func (r KeyResponse) Counts() []KeyCount {
	var out []KeyCount
	for _, keys := range r.Keys {
		for i, k := range keys {
			j := slices.IndexFunc(out, func(c KeyCount) bool { return bytes.Equal(c.Key, k) })
			if j < 0 {
				out = append(out, KeyCount{Key: k})
				j = len(out) - 1
			}
			out[j].Nodes++
			if i == 0 {
				out[j].Primary++
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Primary != out[j].Primary {
			return out[i].Primary > out[j].Primary
		}
		if out[i].Nodes != out[j].Nodes {
			return out[i].Nodes > out[j].Nodes
		}
		return bytes.Compare(out[i].Key, out[j].Key) < 0
	})
	return out
}

// KeyConflictError refuses a use or remove that would cut nodes off the fleet:
// a use of a key some node lacks, a remove of a key some node encrypts with, or
// either when a node did not answer whether it would be cut off.
type KeyConflictError struct {
	Op    KeyOp
	Nodes map[string]string // node → why
}

func (e *KeyConflictError) Error() string {
	names := make([]string, 0, len(e.Nodes))
	for n := range e.Nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + " (" + e.Nodes[n] + ")"
	}
	fix := "install it on every node first"
	if e.Op == KeyRemove {
		fix = "use another key on every node first"
	}
	return fmt.Sprintf("refused to %s the key: it would cut off %d node(s): %s; %s, and retry once every node answers", e.Op, len(names), strings.Join(parts, ", "), fix)
}

// ListKeys asks every live member for its keys. timeout bounds the wait for the
// answers (0: Config.KeyringTimeout).
func (k *KeyManager) ListKeys(ctx context.Context, timeout time.Duration) (KeyResponse, error) {
	return k.fleet(ctx, KeyList, nil, timeout)
}

// InstallKey adds key to every live member's ring; they decrypt with it from then on.
func (k *KeyManager) InstallKey(ctx context.Context, key []byte, timeout time.Duration) (KeyResponse, error) {
	if err := k.precheck(key); err != nil {
		return KeyResponse{Op: KeyInstall}, err
	}
	return k.fleet(ctx, KeyInstall, key, timeout)
}

// UseKey makes key the primary key of every live member. It lists the fleet first and
// refuses (*KeyConflictError) while a member lacks the key or does not answer.
func (k *KeyManager) UseKey(ctx context.Context, key []byte, timeout time.Duration) (KeyResponse, error) {
	return k.checked(ctx, KeyUse, key, timeout, func(keys [][]byte) string {
		if !slices.ContainsFunc(keys, func(x []byte) bool { return bytes.Equal(x, key) }) {
			return "does not have the key"
		}
		return ""
	})
}

// RemoveKey removes key from every live member's ring. It lists the fleet first and
// refuses (*KeyConflictError) while a member uses the key as its primary key or does
// not answer.
func (k *KeyManager) RemoveKey(ctx context.Context, key []byte, timeout time.Duration) (KeyResponse, error) {
	return k.checked(ctx, KeyRemove, key, timeout, func(keys [][]byte) string {
		if len(keys) > 0 && bytes.Equal(keys[0], key) {
			return "uses it as its primary key"
		}
		return ""
	})
}

// precheck refuses locally what every node would refuse.
func (k *KeyManager) precheck(key []byte) error {
	if k.g.keyring == nil {
		return k.encryptionOff()
	}
	return CheckKey(key)
}

func (k *KeyManager) encryptionOff() error {
	return fmt.Errorf("%w on %s: start agents with --encrypt (memberlist cannot turn encryption on while it runs)", ErrEncryptionOff, k.g.cfg.Name)
}

// checked runs op after a listing round in which every asked member answered and
// none is refused by cut (which returns why a node's keys forbid op, or "").
func (k *KeyManager) checked(ctx context.Context, op KeyOp, key []byte, timeout time.Duration, cut func(keys [][]byte) string) (KeyResponse, error) {
	if err := k.precheck(key); err != nil {
		return KeyResponse{Op: op}, err
	}
	list, _ := k.fleet(ctx, KeyList, nil, timeout)
	conflict := &KeyConflictError{Op: op, Nodes: map[string]string{}}
	for node, keys := range list.Keys {
		if why := cut(keys); why != "" {
			conflict.Nodes[node] = why
		}
	}
	for _, node := range list.NoAnswer {
		conflict.Nodes[node] = "did not answer"
	}
	for node, e := range list.Errors {
		if _, ok := conflict.Nodes[node]; !ok && len(list.Keys[node]) == 0 {
			conflict.Nodes[node] = e
		}
	}
	if len(conflict.Nodes) > 0 {
		list.Op = op
		return list, conflict
	}
	return k.fleet(ctx, op, key, timeout)
}

// fleet applies op here and on every live member and collects their answers.
func (k *KeyManager) fleet(ctx context.Context, op KeyOp, key []byte, timeout time.Duration) (KeyResponse, error) {
	if timeout <= 0 {
		timeout = k.g.cfg.KeyringTimeout
	}
	self := k.g.cfg.Name
	res := KeyResponse{Op: op, Keys: map[string][][]byte{}, Errors: map[string]string{}}
	var peers []string
	for _, m := range k.g.Members() {
		switch {
		case m.Name == self:
		case m.Up():
			peers = append(peers, m.Name)
		default:
			res.Down = append(res.Down, m.Name)
		}
	}
	res.Asked = append(slices.Clone(peers), self)
	sort.Strings(res.Asked)

	w := &keyWaiter{asked: make(map[string]bool, len(peers)), ch: make(chan keyInbound, len(peers))}
	for _, p := range peers {
		w.asked[p] = true
	}
	id := k.qid.Add(1)
	k.wmu.Lock()
	k.waiters[id] = w
	k.wmu.Unlock()
	defer func() {
		k.wmu.Lock()
		delete(k.waiters, id)
		k.wmu.Unlock()
	}()

	// Here first: a refusal on this node (persistence failing, a full ring) stops the
	// operation before any peer changes, and after "use" the peers' answers come
	// back encrypted with a key this node already decrypts with.
	keys, err := k.apply(op, key)
	if keys != nil {
		res.Keys[self] = keys
	}
	if err != nil {
		res.Asked, res.Errors[self] = []string{self}, err.Error()
		if errors.Is(err, ErrEncryptionOff) {
			return res, err
		}
		return res, fmt.Errorf("%s the key on %s: %w", op, self, err)
	}

	req, err := encodeKeyMessage(keyRequest{ID: id, Op: op, Key: key})
	if err != nil {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var wg sync.WaitGroup
	sendErrs := make(chan keyInbound, len(peers))
	sem := make(chan struct{}, 16) // sends in flight: each may wait for a TCP timeout
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-wctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := k.g.SendReliable(p, KindKeyring, req); err != nil {
				sendErrs <- keyInbound{from: p, resp: keyResponse{Error: err.Error()}}
			}
		}()
	}
	pending := maps.Clone(w.asked)
	for len(pending) > 0 {
		var in keyInbound
		select {
		case in = <-w.ch:
		case in = <-sendErrs:
		case <-wctx.Done():
		}
		if in.from == "" {
			break
		}
		if !pending[in.from] {
			continue // a duplicate
		}
		delete(pending, in.from)
		if in.resp.Keys != nil {
			res.Keys[in.from] = in.resp.Keys
		}
		if in.resp.Error != "" {
			res.Errors[in.from] = in.resp.Error
		}
	}
	cancel()
	wg.Wait()
	for p := range pending {
		res.NoAnswer = append(res.NoAnswer, p)
	}
	sort.Strings(res.NoAnswer)
	sort.Strings(res.Down)
	if n := res.Failed(); n > 0 {
		return res, fmt.Errorf("%w: %s failed on %d of %d nodes", ErrKeyringPartial, op, n, len(res.Asked))
	}
	return res, nil
}

// apply performs op on this node's ring: compute, persist, then change memberlist's
// ring, under mu. It returns the keys held afterwards (before, on an error).
func (k *KeyManager) apply(op KeyOp, key []byte) ([][]byte, error) {
	ring := k.g.keyring
	if ring == nil {
		return nil, k.encryptionOff()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	cur := cloneKeys(ring.GetKeys())
	next, changed, err := NextKeys(cur, op, key)
	if err != nil {
		return cur, err
	}
	if !changed {
		return cur, nil
	}
	if p := k.g.cfg.PersistKeys; p != nil {
		if err := p(cloneKeys(next)); err != nil {
			return cur, fmt.Errorf("persist the keyring: %w", err)
		}
	}
	key = slices.Clone(key) // memberlist keeps the slice
	switch op {
	case KeyInstall:
		err = ring.AddKey(key)
	case KeyUse:
		err = ring.UseKey(key)
	case KeyRemove:
		// memberlist's RemoveKey shifts the later keys down in the array other
		// goroutines may be reading; the key removed in a rotation (install, use,
		// remove) is the last one, and then nothing is shifted.
		err = ring.RemoveKey(key)
	}
	after := cloneKeys(ring.GetKeys())
	if err != nil {
		// NextKeys accepted the change, and only this code changes the ring.
		k.g.log.Error("keyring change refused by memberlist after it was persisted", "op", op, "err", err)
		return after, fmt.Errorf("change the keyring: %w", err)
	}
	k.g.log.Info("gossip keyring changed", "op", op, "keys", len(after))
	return after, nil
}

// handleMessage takes one KindKeyring message (gossip handler): an answer goes to its
// waiter, a request to the run loop. It never blocks.
func (k *KeyManager) handleMessage(from string, payload []byte) {
	msg, err := decodeKeyMessage(payload)
	if err != nil {
		k.g.metrics.decodeErrors.WithLabelValues("keyring").Inc()
		k.g.log.Debug("bad keyring message", "from", from, "err", err)
		return
	}
	switch m := msg.(type) {
	case keyResponse:
		k.wmu.Lock()
		w := k.waiters[m.ID]
		k.wmu.Unlock()
		if w == nil || !w.asked[from] {
			return // late, or from a node not asked
		}
		select {
		case w.ch <- keyInbound{from: from, resp: m}:
		default: // a duplicate filled the buffer; the first answer is there
		}
	case keyRequest:
		select {
		case k.requests <- keyInbound{from: from, req: m}:
		default:
			k.g.metrics.dropped.WithLabelValues("keyring_queue_full").Inc()
		}
	}
}

// run applies peers' requests and answers them, one at a time, until ctx ends.
func (k *KeyManager) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-k.requests:
			keys, err := k.apply(in.req.Op, in.req.Key)
			resp := keyResponse{ID: in.req.ID, Keys: keys}
			if err != nil {
				resp.Error = err.Error()
				if len(resp.Error) > maxKeyErrorBytes {
					resp.Error = resp.Error[:maxKeyErrorBytes]
				}
			}
			b, err := encodeKeyMessage(resp)
			if err != nil {
				k.g.log.Error("encode keyring answer", "err", err)
				continue
			}
			if err := k.g.SendReliable(in.from, KindKeyring, b); err != nil {
				k.g.log.Debug("answer keyring request", "to", in.from, "err", err)
			}
		}
	}
}
