package gossip

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeTransport is the inner transport of a countingTransport under test: packets
// to addresses in fail are refused, dials return one end of a pipe.
type fakeTransport struct {
	memberlist.NodeAwareTransport // unused methods panic
	fail                          map[string]bool
	streams                       chan net.Conn
	peers                         chan net.Conn // the far ends of dialed pipes
	shut                          bool
}

func (f *fakeTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if f.fail[a.Addr] {
		return time.Time{}, errors.New("refused")
	}
	return time.Now(), nil
}

func (f *fakeTransport) DialAddressTimeout(a memberlist.Address, _ time.Duration) (net.Conn, error) {
	near, far := net.Pipe()
	f.peers <- far
	return near, nil
}

func (f *fakeTransport) StreamCh() <-chan net.Conn { return f.streams }
func (f *fakeTransport) Shutdown() error           { f.shut = true; return nil }

func TestCountingTransportCountsWhatIsSent(t *testing.T) {
	inner := &fakeTransport{fail: map[string]bool{"10.0.0.9:7946": true}, streams: make(chan net.Conn), peers: make(chan net.Conn, 1)}
	packets := prometheus.NewCounter(prometheus.CounterOpts{Name: "p"})
	streams := prometheus.NewCounter(prometheus.CounterOpts{Name: "s"})
	tr := newCountingTransport(inner, packets, streams)

	if _, err := tr.WriteToAddress(make([]byte, 100), memberlist.Address{Addr: "10.0.0.1:7946"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.WriteTo(make([]byte, 20), "10.0.0.1:7946"); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.WriteToAddress(make([]byte, 1000), memberlist.Address{Addr: "10.0.0.9:7946"}); err == nil {
		t.Fatal("a refused packet: got nil error")
	}
	if got := testutil.ToFloat64(packets); got != 120 {
		t.Errorf("packet bytes = %v, want 120 (a packet the transport refused is not sent)", got)
	}

	// A stream this node dials, and one it accepts: both count what this node writes.
	dialed, err := tr.DialTimeout("10.0.0.1:7946", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	writeAndDrain(t, dialed, <-inner.peers, 50)
	near, far := net.Pipe()
	go func() { inner.streams <- near }()
	accepted := <-tr.StreamCh()
	writeAndDrain(t, accepted, far, 30)
	if got := testutil.ToFloat64(streams); got != 80 {
		t.Errorf("stream bytes = %v, want 80", got)
	}
	if err := tr.Shutdown(); err != nil || !inner.shut {
		t.Errorf("Shutdown: err %v, inner shut down %v; want nil, true", err, inner.shut)
	}
}

func writeAndDrain(t *testing.T, c, far net.Conn, n int) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(far, make([]byte, n))
		done <- err
	}()
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.Close()
	far.Close()
}
