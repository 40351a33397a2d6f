package gossip

import "fmt"

// Keyring message types: the first byte of every KindKeyring payload.
const (
	keyMsgRequest  byte = 1 // asker → member: apply an operation and answer
	keyMsgResponse byte = 2 // member → asker: its keys afterwards, or why it failed
)

// Limits of a keyring message from a peer.
const (
	maxKeyMessageBytes = 4 << 10
	maxKeyErrorBytes   = 1 << 10
)

// keyRequest asks a member to apply Op (with Key, except for list) and answer.
type keyRequest struct {
	ID  uint64 `codec:"q"`
	Op  KeyOp  `codec:"o"`
	Key []byte `codec:"k,omitempty"`
}

// keyResponse answers a keyRequest: the member's keys after the operation, primary
// first (before it, when it failed), and why it failed.
type keyResponse struct {
	ID    uint64   `codec:"q"`
	Keys  [][]byte `codec:"k,omitempty"`
	Error string   `codec:"e,omitempty"`
}

func encodeKeyMessage(m any) ([]byte, error) {
	var typ byte
	switch m.(type) {
	case keyRequest:
		typ = keyMsgRequest
	case keyResponse:
		typ = keyMsgResponse
	default:
		return nil, fmt.Errorf("encode %T: not a keyring message", m)
	}
	b, err := encode(m)
	if err != nil {
		return nil, err
	}
	return append([]byte{typ}, b...), nil
}

// decodeKeyMessage decodes and checks a keyring message from a peer: a keyRequest or
// a keyResponse. It never panics on hostile input.
func decodeKeyMessage(b []byte) (any, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w keyring message: %d bytes", ErrDecode, len(b))
	}
	switch b[0] {
	case keyMsgRequest:
		var r keyRequest
		if err := decode(b[1:], maxKeyMessageBytes, &r); err != nil {
			return nil, err
		}
		if !r.Op.valid() {
			return nil, fmt.Errorf("%w keyring request: unknown operation %q", ErrDecode, r.Op)
		}
		if r.Op == KeyList && len(r.Key) > 0 {
			return nil, fmt.Errorf("%w keyring request: list with a key", ErrDecode)
		}
		if r.Op != KeyList {
			if err := CheckKey(r.Key); err != nil {
				return nil, fmt.Errorf("%w keyring request: %v", ErrDecode, err)
			}
		}
		return r, nil
	case keyMsgResponse:
		var r keyResponse
		if err := decode(b[1:], maxKeyMessageBytes, &r); err != nil {
			return nil, err
		}
		if len(r.Keys) > MaxKeys {
			return nil, fmt.Errorf("%w keyring answer: %d keys, the limit is %d", ErrDecode, len(r.Keys), MaxKeys)
		}
		for _, k := range r.Keys {
			if err := CheckKey(k); err != nil {
				return nil, fmt.Errorf("%w keyring answer: %v", ErrDecode, err)
			}
		}
		if len(r.Error) > maxKeyErrorBytes {
			return nil, fmt.Errorf("%w keyring answer: error of %d bytes", ErrDecode, len(r.Error))
		}
		if len(r.Keys) == 0 && r.Error == "" {
			return nil, fmt.Errorf("%w keyring answer: no keys and no error", ErrDecode)
		}
		return r, nil
	}
	return nil, fmt.Errorf("%w keyring message: unknown type %d", ErrDecode, b[0])
}
