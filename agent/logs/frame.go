package logs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types of the HTTP body: the first byte of each frame header.
const (
	FrameStdout byte = 1
	FrameStderr byte = 2
	// FrameError carries the agent's message when the stream ends with an error
	// after the answer's status line went out (a node lost mid-follow).
	FrameError byte = 3
)

// ContentType is the media type of a logs answer.
const ContentType = "application/vnd.murmur.log-stream"

// MaxFrameBytes is the largest payload FrameReader accepts; WriteFrame splits
// larger ones.
const MaxFrameBytes = 1 << 20

const frameHeaderLen = 8

// WriteFrame writes p as frames of type typ, none over MaxFrameBytes.
func WriteFrame(w io.Writer, typ byte, p []byte) error {
	for first := true; first || len(p) > 0; first = false {
		n := min(len(p), MaxFrameBytes)
		var hdr [frameHeaderLen]byte
		hdr[0] = typ
		binary.BigEndian.PutUint32(hdr[4:], uint32(n))
		if _, err := w.Write(append(hdr[:], p[:n]...)); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// FrameReader reads the frames of a logs answer.
type FrameReader struct {
	r   io.Reader
	buf []byte
}

// NewFrameReader reads frames from r.
func NewFrameReader(r io.Reader) *FrameReader { return &FrameReader{r: r} }

// ErrFrame marks bytes that are not a frame.
var ErrFrame = errors.New("bad log stream frame")

// Next returns the next frame's type and payload; the payload is valid until the
// next call. It returns io.EOF at the end of the stream between frames,
// io.ErrUnexpectedEOF inside one, and ErrFrame for a header that is not a frame's
// (unknown type, reserved bytes set, payload over MaxFrameBytes).
func (f *FrameReader) Next() (byte, []byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	typ := hdr[0]
	if typ < FrameStdout || typ > FrameError || hdr[1] != 0 || hdr[2] != 0 || hdr[3] != 0 {
		return 0, nil, fmt.Errorf("%w: header % x", ErrFrame, hdr)
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n > MaxFrameBytes {
		return 0, nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrFrame, n, MaxFrameBytes)
	}
	if cap(f.buf) < int(n) {
		f.buf = make([]byte, n)
	}
	p := f.buf[:n]
	if _, err := io.ReadFull(f.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return typ, p, nil
}
