package runtime

import (
	"context"
	"testing"
	"time"
)

// The simulated driver runs an instance from Start until Stop, Wait returns then, and
// a supervisor over it keeps the desired set like over a real driver.
func TestSimDriver(t *testing.T) {
	d := NewSimDriver(DriverExec)
	ctx := context.Background()
	h, err := d.Start(ctx, spec("a"))
	if err != nil {
		t.Fatal(err)
	}
	if hs, _ := d.List(ctx); len(hs) != 1 || !hs[0].Running || hs[0].InstanceID != "a" || d.Running() != 1 {
		t.Fatalf("List = %+v, Running %d; want a running", hs, d.Running())
	}
	waited := make(chan ExitStatus, 1)
	go func() { st, _ := d.Wait(ctx, h); waited <- st }()
	if err := d.Stop(ctx, h, time.Second); err != nil {
		t.Fatal(err)
	}
	if st := <-waited; st.Code != 0 {
		t.Errorf("Wait after Stop = %+v, want exit code 0", st)
	}
	if d.Running() != 0 {
		t.Errorf("Running = %d after Stop", d.Running())
	}
	if err := d.Stop(ctx, h, time.Second); err != nil {
		t.Errorf("stopping a stopped instance: %v", err)
	}

	hn := newRealHarness(t, t.TempDir(), map[string]Driver{DriverExec: d})
	if err := hn.sup.SetDesired([]InstanceSpec{spec("x"), spec("y")}); err != nil {
		t.Fatal(err)
	}
	hn.run()
	hn.waitFor("x and y running", func(m map[string]InstanceStatus) bool {
		return m["x"].State == StateRunning && m["y"].State == StateRunning
	})
	if err := hn.sup.SetDesired([]InstanceSpec{spec("x")}); err != nil {
		t.Fatal(err)
	}
	hn.waitFor("y stopped", func(m map[string]InstanceStatus) bool { _, ok := m["y"]; return !ok && d.Running() == 1 })
}
