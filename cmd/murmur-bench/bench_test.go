package main

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func msd(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	twenty := msd(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample p50", msd(7), 50, 7 * time.Millisecond},
		{"one sample p99", msd(7), 99, 7 * time.Millisecond},
		{"odd count median", msd(3, 1, 2), 50, 2 * time.Millisecond},
		{"even count median is lower middle", msd(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"20 samples p50", twenty, 50, 10 * time.Millisecond},
		{"20 samples p95", twenty, 95, 19 * time.Millisecond},
		{"20 samples p99 is max", twenty, 99, 20 * time.Millisecond},
		{"100 samples p99", hundred, 99, 99 * time.Millisecond},
		{"100 samples p100", hundred, 100, 100 * time.Millisecond},
		{"tiny p is min", twenty, 0.1, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]time.Duration(nil), tt.samples...)
			if got := percentile(tt.samples, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.samples, tt.p, got, tt.want)
			}
			if diff := cmp.Diff(in, tt.samples); diff != "" {
				t.Errorf("percentile modified its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	got := summarize(msd(30, 10, 20, 40))
	want := summary{N: 4, Min: 10 * time.Millisecond, P50: 20 * time.Millisecond, P99: 40 * time.Millisecond, Max: 40 * time.Millisecond, Mean: 25 * time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summarize (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(summary{}, summarize(nil)); diff != "" {
		t.Errorf("summarize(nil) (-want +got):\n%s", diff)
	}
}

func TestSlowestFastest(t *testing.T) {
	got := [][]time.Duration{msd(5, 50), msd(3, 70), msd(9, 60)}
	if s := slowest(got, 1); s != 70*time.Millisecond {
		t.Errorf("slowest col 1 = %v, want 70ms", s)
	}
	if f := fastest(got, 0); f != 3*time.Millisecond {
		t.Errorf("fastest col 0 = %v, want 3ms", f)
	}
}

func TestProcCPUTicks(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr string
	}{
		{"plain", "1234 (murmur) S 1 1234 1234 0 -1 4194560 500 0 0 0 150 37 0 0 20 0 9 0 100 0 0", 187, ""},
		{"name with spaces and parens", "99 (a b) c)) R 1 2 3 4 5 6 7 8 9 10 11 22 0 0", 33, ""},
		{"no paren", "1234 murmur S 1", 0, "no ')'"},
		{"too short", "1 (x) S 1 2 3", 0, "fields after the command name"},
		{"bad utime", "1 (x) S 1 2 3 4 5 6 7 8 9 10 zz 3", 0, "utime"},
		{"bad stime", "1 (x) S 1 2 3 4 5 6 7 8 9 10 1 -3", 0, "stime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := procCPUTicks([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("procCPUTicks(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("procCPUTicks(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestProcRSSBytes(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr string
	}{
		{"typical", "Name:\tmurmur\nVmPeak:\t  900000 kB\nVmRSS:\t   19660 kB\nThreads:\t9\n", 19660 * 1024, ""},
		{"missing", "Name:\tkthreadd\nThreads:\t1\n", 0, "no VmRSS"},
		{"bad unit", "VmRSS:\t 12 MB\n", 0, "want \"<n> kB\""},
		{"bad number", "VmRSS:\t x kB\n", 0, "VmRSS"},
		{"overflow", "VmRSS:\t 18446744073709551615 kB\n", 0, "overflows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := procRSSBytes([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("procRSSBytes error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("procRSSBytes = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestDecodeMembers(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{"two", `{"members":[{"name":"a","status":"alive","load":{"cpu":0.2}},{"name":"b","status":"dead"}]}`,
			map[string]string{"a": "alive", "b": "dead"}, ""},
		{"empty", `{"members":[]}`, map[string]string{}, ""},
		{"nameless", `{"members":[{"status":"alive"}]}`, nil, "without a name"},
		{"not json", `<html>`, nil, "decode /v1/members"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeMembers([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decodeMembers error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decodeMembers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := options{Bin: "/x/murmur", Nodes: 5, Runs: 5, Kills: 20, Duration: 10 * time.Minute,
		Poll: 20 * time.Millisecond, Observe: time.Second, ConvergeTimout: time.Minute, EventTimeout: 30 * time.Second, LogLevel: "info",
		Pushes: 50, Voters: 3, RestoreTimeout: time.Minute}
	tests := []struct {
		name    string
		cmd     string
		mod     func(*options)
		wantErr string // "" = valid
	}{
		{"join ok", "join", func(*options) {}, ""},
		{"kill ok", "kill", func(*options) {}, ""},
		{"idle ok", "idle", func(*options) {}, ""},
		{"no bin", "join", func(o *options) { o.Bin = "" }, "--bin is required"},
		{"one node join", "join", func(o *options) { o.Nodes = 1 }, "--nodes 1"},
		{"two nodes kill", "kill", func(o *options) { o.Nodes = 2 }, "--nodes 2"},
		{"too many nodes", "join", func(o *options) { o.Nodes = 201 }, "--nodes 201"},
		{"zero runs", "join", func(o *options) { o.Runs = 0 }, "--runs 0"},
		{"runs ignored by kill", "kill", func(o *options) { o.Runs = 0 }, ""},
		{"zero kills", "kill", func(o *options) { o.Kills = 0 }, "--kills 0"},
		{"short idle", "idle", func(o *options) { o.Duration = time.Second }, "--duration 1s"},
		{"observe longer than duration", "idle", func(o *options) { o.Observe = time.Hour }, "--observe"},
		{"observe ignored by join", "join", func(o *options) { o.Observe = 0 }, ""},
		{"zero poll", "kill", func(o *options) { o.Poll = 0 }, "--poll"},
		{"tiny converge timeout", "join", func(o *options) { o.ConvergeTimout = time.Millisecond }, "--converge-timeout"},
		{"tiny event timeout", "kill", func(o *options) { o.EventTimeout = 0 }, "--event-timeout"},
		{"negative settle", "join", func(o *options) { o.Settle = -time.Second }, "--settle"},
		{"bad log level", "idle", func(o *options) { o.LogLevel = "trace" }, "--log-level"},
		{"failover ok", "failover", func(*options) {}, ""},
		{"handoff ok", "handoff", func(*options) {}, ""},
		{"intents ok", "intents", func(*options) {}, ""},
		{"zero kills failover", "failover", func(o *options) { o.Kills = 0 }, "--kills 0"},
		{"zero runs handoff", "handoff", func(o *options) { o.Runs = 0 }, "--runs 0"},
		{"voters as many as nodes", "failover", func(o *options) { o.Voters = 5 }, "--voters 5"},
		{"two nodes handoff", "handoff", func(o *options) { o.Nodes = 2 }, "--nodes 2"},
		{"tiny restore timeout", "handoff", func(o *options) { o.RestoreTimeout = 0 }, "--restore-timeout"},
		{"zero pushes", "intents", func(o *options) { o.Pushes = 0 }, "--pushes 0"},
		{"size too big", "intents", func(o *options) { o.Size = 1 << 20 }, "--size"},
		{"unknown subcommand", "soak", func(*options) {}, "unknown subcommand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			err := o.validate(tt.cmd)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate(%s) = %v, want nil", tt.cmd, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validate(%s) = %v, want error containing %q", tt.cmd, err, tt.wantErr)
			}
		})
	}
}

// TestPickGossipPort checks that picked ports are free for TCP and UDP, with port+1
// free too, and that two picks are at least 10 apart.
func TestPickGossipPort(t *testing.T) {
	f, err := newFleet(options{Bin: "/bin/sh"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(false)
	var picked []int
	for range 3 {
		p, err := f.pickGossipPort()
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []int{p, p + 1} {
			addr := "127.0.0.1:" + strconv.Itoa(q)
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("picked port %d: tcp %s not free: %v", p, addr, err)
			}
			l.Close()
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				t.Fatalf("picked port %d: udp %s not free: %v", p, addr, err)
			}
			u.Close()
		}
		for _, q := range picked {
			if d := p - q; d > -10 && d < 10 {
				t.Errorf("ports %d and %d are %d apart, want >= 10", p, q, d)
			}
		}
		picked = append(picked, p)
	}
	h, err := f.pickHTTPPort()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range picked {
		if h >= q-1 && h <= q+2 {
			t.Errorf("http port %d collides with gossip/raft ports %d/%d", h, q, q+1)
		}
	}
}

func TestNewFleetRejectsBadBin(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, bin := range []string{"/nonexistent/murmur", t.TempDir()} {
		if f, err := newFleet(options{Bin: bin}, log); err == nil {
			f.Close(false)
			t.Errorf("newFleet(--bin %s) = nil error, want one naming --bin", bin)
		} else if !strings.Contains(err.Error(), "--bin") {
			t.Errorf("newFleet(--bin %s) error %q does not name --bin", bin, err)
		}
	}
}

func FuzzProcParsers(f *testing.F) {
	f.Add([]byte("1234 (murmur) S 1 1234 1234 0 -1 4194560 500 0 0 0 150 37 0 0 20 0 9 0"))
	f.Add([]byte("Name:\tmurmur\nVmRSS:\t   19660 kB\n"))
	f.Add([]byte("1 ()) ) S"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = procCPUTicks(b)
		_, _ = procRSSBytes(b)
	})
}

func FuzzDecodeMembers(f *testing.F) {
	f.Add([]byte(`{"members":[{"name":"a","status":"alive"}]}`))
	f.Add([]byte(`{"members":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMembers(b)
		if err == nil {
			for name := range m {
				if name == "" {
					t.Fatal("decodeMembers accepted a member without a name")
				}
			}
		}
	})
}

func TestSumMetric(t *testing.T) {
	text := `# HELP memberlist_msg_suspect_total x
# TYPE memberlist_msg_suspect_total counter
memberlist_msg_suspect_total 3
memberlist_msg_suspect_total_other 100
memberlist_msg_dead_total{node="a"} 2
memberlist_msg_dead_total{node="b",x="}"} 5 1700000000
`
	tests := []struct {
		name      string
		text      string
		metric    string
		want      float64
		wantFound bool
		wantErr   string
	}{
		{"plain", text, "memberlist_msg_suspect_total", 3, true, ""},
		{"labels summed", text, "memberlist_msg_dead_total", 7, true, ""},
		{"absent", text, "memberlist_degraded_probe_total", 0, false, ""},
		{"prefix of another name only", "abc_total 4\n", "abc", 0, false, ""},
		{"bad value", "m 1x\n", "m", 0, false, "parse metric m"},
		{"no value", "m{a=\"b\"}\n", "m", 0, false, "no value"},
		{"unterminated labels", "m{a=\"b\" 3\n", "m", 0, false, "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found, err := sumMetric([]byte(tt.text), tt.metric)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("sumMetric error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || found != tt.wantFound {
				t.Errorf("sumMetric(%s) = %v, %v, %v; want %v, %v", tt.metric, got, found, err, tt.want, tt.wantFound)
			}
		})
	}
}

func FuzzSumMetric(f *testing.F) {
	f.Add([]byte("m 1\nm{a=\"}\"} 2 17\n# c\n"), "m")
	f.Fuzz(func(t *testing.T, text []byte, name string) {
		_, _, _ = sumMetric(text, name)
	})
}
