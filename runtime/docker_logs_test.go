package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestDockerLogs reads the engine's log of real containers of the test image: a
// backlog per stream, the cap, and a follow that ends when the container exits
// and sends nothing twice. Skipped without an engine unless MURMUR_REQUIRE_DOCKER=1.
func TestDockerLogs(t *testing.T) {
	cli, img := dockerForTest(t)
	d := newTestDockerDriver(t, cli)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// --burn-cpu 2 is refused on stderr, exit 2.
	bad, err := d.Start(ctx, dockSpec(img, "bad", "--burn-cpu", "2"))
	if err != nil {
		t.Fatal(err)
	}
	if es, err := d.Wait(ctx, bad); err != nil || es.Code != 2 {
		t.Fatalf("bad: exit %+v, %v; want 2", es, err)
	}
	var got collect
	if err := d.Logs(ctx, bad, LogOptions{Stdout: true, Stderr: true, Tail: -1}, got.sink); err != nil {
		t.Fatal(err)
	}
	if g := got.get(LogStderr); g != "workload: --burn-cpu must be between 0 and 1\n" {
		t.Errorf("stderr = %q", g)
	}
	if g := got.get(LogStdout); g != "" {
		t.Errorf("stdout = %q, want nothing", g)
	}
	got = collect{}
	if err := d.Logs(ctx, bad, LogOptions{Stdout: true, Tail: -1}, got.sink); err != nil || got.get(LogStderr) != "" {
		t.Errorf("stdout only: stderr %q, %v; want nothing", got.get(LogStderr), err)
	}
	got = collect{}
	if err := d.Logs(ctx, bad, LogOptions{Stderr: true, Tail: -1, MaxBytes: 8}, got.sink); err != nil || got.get(LogStderr) != "0 and 1\n" {
		t.Errorf("capped at 8 bytes: %q, %v; want the line's last 8 bytes", got.get(LogStderr), err)
	}

	// Follow from the start: "started" comes in the backlog or the follow read,
	// exactly once, then "exiting with 0", then Logs returns as the container ends.
	live, err := d.Start(ctx, dockSpec(img, "live", "--exit-after", "1500ms"))
	if err != nil {
		t.Fatal(err)
	}
	got = collect{}
	if err := d.Logs(ctx, live, LogOptions{Stdout: true, Stderr: true, Tail: -1, Follow: true}, got.sink); err != nil {
		t.Fatalf("follow: %v", err)
	}
	out := got.get(LogStdout)
	if strings.Count(out, "workload: started pid=") != 1 || !strings.HasSuffix(out, "workload: exiting with 0\n") {
		t.Errorf("followed stdout = %q, want the start line once, then the exit line", out)
	}

	// Gone containers and handles without one.
	if err := d.Stop(ctx, bad, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.Logs(ctx, bad, LogOptions{Stdout: true, Tail: -1}, got.sink); !errors.Is(err, ErrNoLogs) {
		t.Errorf("logs of a removed container = %v, want ErrNoLogs", err)
	}
	if err := d.Logs(ctx, Handle{InstanceID: "x"}, LogOptions{Stdout: true, Tail: -1}, got.sink); !errors.Is(err, ErrNoLogs) {
		t.Errorf("logs without a container = %v, want ErrNoLogs", err)
	}
}
