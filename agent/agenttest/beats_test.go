package agenttest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeBeats(t *testing.T, dir, name string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name+".beats"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func at(ms int) string {
	return fmt.Sprint(time.Unix(1000, 0).Add(time.Duration(ms) * time.Millisecond).UnixNano())
}

func TestBeatsOverlapsAndRefusedWrites(t *testing.T) {
	dir := t.TempDir()
	// a-1 ran 0–100 ms and stopped; b-2 started at 100 (no overlap), froze after 200
	// and ran on to 330 after c-3 started at 300 (30 ms overlap, 3 refused writes).
	writeBeats(t, dir, "a-1", "netns net:[1]", "start "+at(0), "beat "+at(50), "stop "+at(100))
	writeBeats(t, dir, "b-2", "netns net:[2]", "start "+at(100), "beat "+at(200), "beat "+at(310), "beat "+at(320), "beat "+at(330), "stop "+at(330))
	writeBeats(t, dir, "c-3", "netns net:[3]", "start "+at(300), "beat "+at(400))
	// d-4 was killed mid-line: the torn line is skipped, and it ran to its last beat plus slack.
	if err := os.WriteFile(filepath.Join(dir, "d-4.beats"), []byte("start "+at(500)+"\nbeat "+at(510)+"\nbeat 12"), 0o644); err != nil {
		t.Fatal(err)
	}
	ivs, err := ReadBeats(dir, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(ivs) != 4 || ivs[0].Name != "a-1" || ivs[1].NetNS != "net:[2]" || ivs[1].Epoch != 2 || ivs[3].End.Sub(ivs[3].Start) != 20*time.Millisecond {
		t.Fatalf("read %+v", ivs)
	}
	ovs := OverlapsOf(ivs[:3])
	if len(ovs) != 1 || ovs[0].Older.Name != "b-2" || ovs[0].Newer.Name != "c-3" || ovs[0].To.Sub(ovs[0].From) != 30*time.Millisecond {
		t.Fatalf("overlaps %v", ovs)
	}
	if total, pairs := Overlaps(ivs[:3]); total != 30*time.Millisecond || len(pairs) != 1 {
		t.Fatalf("Overlaps = %v %v", total, pairs)
	}
	// b-2's beats at 310, 320 and 330 and its stop come after c-3's start at 300.
	if n := Refused(ivs[:3]); n != 4 {
		t.Fatalf("Refused = %d, want 4", n)
	}
	if why := EpochsRise(ivs); why != "" {
		t.Fatal(why)
	}
	if why := EpochsRise([]Interval{ivs[1], ivs[0]}); why == "" {
		t.Fatal("EpochsRise missed a falling epoch")
	}
}
