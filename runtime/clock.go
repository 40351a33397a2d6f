package runtime

import "time"

// Clock is the supervisor's time source, injected so tests drive backoff
// and health intervals with a fake clock.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the supervisor uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time { return time.Now() }

func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// DilatedClock runs K times slower than the wall clock: Now advances by 1/K of the
// real time elapsed since Origin, and a timer of d fires after d*K of real time. The
// fleet simulator (cmd/murmur-bench sim) gives it to every agent it runs, with every
// real-time protocol timer scaled by the same K, when a machine cannot keep N agents
// in real time: what the agents do in virtual time is what they would do in real time
// on a machine K times faster. One clock is shared by all the agents of a simulation,
// so their times compare.
type DilatedClock struct {
	k      float64
	origin time.Time
}

// NewDilatedClock returns a clock K times slower than the wall clock from now on. K
// below 1 is taken as 1.
func NewDilatedClock(k float64) *DilatedClock {
	return &DilatedClock{k: max(k, 1), origin: time.Now()}
}

// K is the dilation factor.
func (c *DilatedClock) K() float64 { return c.k }

// Now is the virtual time.
func (c *DilatedClock) Now() time.Time {
	return c.origin.Add(time.Duration(float64(time.Since(c.origin)) / c.k))
}

// Real is the real duration of a virtual one.
func (c *DilatedClock) Real(d time.Duration) time.Duration { return time.Duration(float64(d) * c.k) }

// NewTimer fires after d of virtual time, with the virtual time it fired at.
func (c *DilatedClock) NewTimer(d time.Duration) Timer {
	t := &dilatedTimer{ch: make(chan time.Time, 1)}
	t.t = time.AfterFunc(c.Real(d), func() {
		select {
		case t.ch <- c.Now():
		default:
		}
	})
	return t
}

type dilatedTimer struct {
	t  *time.Timer
	ch chan time.Time
}

func (t *dilatedTimer) C() <-chan time.Time { return t.ch }
func (t *dilatedTimer) Stop() bool          { return t.t.Stop() }
