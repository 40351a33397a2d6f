package runtime

import (
	"testing"
	"time"
)

func TestDilatedClock(t *testing.T) {
	c := NewDilatedClock(10)
	if c.K() != 10 || c.Real(time.Second) != 10*time.Second {
		t.Fatalf("K %v, Real(1s) %v: want 10, 10s", c.K(), c.Real(time.Second))
	}
	if NewDilatedClock(0.5).K() != 1 {
		t.Fatal("K below 1 must be taken as 1")
	}
	realStart, virtStart := time.Now(), c.Now()
	tm := c.NewTimer(5 * time.Millisecond) // 50 ms of real time
	fired := <-tm.C()
	realGap, virtGap := time.Since(realStart), fired.Sub(virtStart)
	if realGap < 50*time.Millisecond {
		t.Fatalf("a 5 ms virtual timer fired after %v of real time, want at least 50 ms", realGap)
	}
	if virtGap < 5*time.Millisecond || virtGap > realGap {
		t.Fatalf("it fired at +%v virtual, want at least 5 ms and at most the real %v", virtGap, realGap)
	}
	// Virtual time is monotonic and slower than real time.
	a := c.Now()
	b := c.Now()
	if b.Before(a) {
		t.Fatalf("Now went back: %v then %v", a, b)
	}
	stopped := c.NewTimer(time.Hour)
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
}
