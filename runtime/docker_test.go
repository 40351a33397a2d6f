package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// dockerForTest returns a client, skipping when no engine answers unless
// MURMUR_REQUIRE_DOCKER=1, and the test image (built here if missing).
func dockerForTest(t testing.TB) (*client.Client, string) {
	t.Helper()
	cli, err := NewDockerClient()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err = cli.Ping(ctx)
		cancel()
	}
	if err != nil {
		if os.Getenv("MURMUR_REQUIRE_DOCKER") == "1" {
			t.Fatalf("MURMUR_REQUIRE_DOCKER=1 but no Docker engine answers: %v", err)
		}
		t.Skipf("no Docker engine answers: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	img := os.Getenv("MURMUR_TEST_IMAGE")
	if img == "" {
		img = "murmur-workload:test"
	}
	if _, err := cli.ImageInspect(context.Background(), img); err != nil {
		dir := t.TempDir()
		b, err := os.ReadFile(workloadPath)
		if err != nil {
			t.Fatal(err)
		}
		df, err := os.ReadFile("../testdata/workload/Dockerfile")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "workload.bin"), b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("docker", "build", "-q", "-t", img, dir).CombinedOutput(); err != nil {
			t.Fatalf("test image %s missing (make test-image builds it) and building it failed: %v\n%s", img, err, out)
		}
	}
	return cli, img
}

// newTestDockerDriver uses a unique owner label and removes every
// container carrying it when the test ends, even on failure.
func newTestDockerDriver(t *testing.T, cli *client.Client) *DockerDriver {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	owner := "murmur-test-" + hex.EncodeToString(b)
	d, err := NewDockerDriver(DockerConfig{Client: cli, Node: "n1", Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		cs, _ := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelOwner+"="+owner))})
		for _, c := range cs {
			_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
	})
	return d
}

func dockSpec(img, id string, args ...string) InstanceSpec {
	return InstanceSpec{ID: id, Intent: "w", Generation: 1, Driver: DriverDocker, Image: img, Command: args}
}

func TestDockerSupervisorLifecycle(t *testing.T) {
	cli, img := dockerForTest(t)
	d := newTestDockerDriver(t, cli)
	dir := t.TempDir()
	h1 := newRealHarness(t, dir, map[string]Driver{DriverDocker: d})

	keep := dockSpec(img, "keep", "--sleep", "1h")
	keep.Resources = Resources{MilliCPU: 250, MemoryBytes: 64 << 20}
	sick := dockSpec(img, "sick", "--listen", "127.0.0.1:8080", "--unhealthy-after", "1s")
	sick.Health = HealthSpec{Exec: []string{"/workload", "--probe", "http://127.0.0.1:8080/healthz"}, Interval: 300 * time.Millisecond, FailureThreshold: 2}
	want := []InstanceSpec{
		keep,
		dockSpec(img, "extra", "--sleep", "1h"),
		dockSpec(img, "crash", "--exit-code", "3", "--exit-after", "200ms"),
		sick,
		dockSpec("vision:1.4", "noimage"),
	}
	if err := h1.sup.SetDesired(want); err != nil {
		t.Fatal(err)
	}
	h1.run()
	m := h1.waitFor("crash and sick restarted, noimage failed", func(m map[string]InstanceStatus) bool {
		return m["keep"].State == StateRunning && m["extra"].State == StateRunning &&
			m["crash"].Restarts >= 1 && m["sick"].Restarts >= 1 && m["noimage"].State == StateFailed
	})
	if got, wantErr := m["noimage"].Error, "image vision:1.4 not present on node n1"; !strings.Contains(got, wantErr) {
		t.Errorf("noimage: error %q, want %q", got, wantErr)
	}
	if m["crash"].LastExit == nil || *m["crash"].LastExit != 3 {
		t.Errorf("crash: last exit %v, want 3", m["crash"].LastExit)
	}
	if !strings.Contains(m["sick"].Error, "health") {
		t.Errorf("sick: error %q, want a health failure", m["sick"].Error)
	}
	ctx := context.Background()
	ins, err := cli.ContainerInspect(ctx, m["keep"].Ref)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{LabelNode: "n1", LabelIntent: "w", LabelInstance: "keep", LabelGeneration: "1"} {
		if ins.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, ins.Config.Labels[k], v)
		}
	}
	if ins.HostConfig.RestartPolicy.Name != container.RestartPolicyDisabled {
		t.Errorf("restart policy %q, want no", ins.HostConfig.RestartPolicy.Name)
	}
	if ins.HostConfig.NanoCPUs != 250_000_000 || ins.HostConfig.Memory != 64<<20 {
		t.Errorf("limits NanoCPUs=%d Memory=%d, want 250000000 and %d", ins.HostConfig.NanoCPUs, ins.HostConfig.Memory, 64<<20)
	}
	u, err := d.Usage(ctx, Handle{Ref: m["keep"].Ref})
	if err != nil || u.MemoryBytes <= 0 {
		t.Errorf("Usage = %+v, %v; want memory in use", u, err)
	}

	// Shrink: extra is stopped and removed.
	extra := m["extra"].Ref
	if err := h1.sup.SetDesired([]InstanceSpec{keep}); err != nil {
		t.Fatal(err)
	}
	h1.waitFor("only keep", func(m map[string]InstanceStatus) bool { return len(m) == 1 })
	if _, err := cli.ContainerInspect(ctx, extra); !client.IsErrNotFound(err) {
		t.Errorf("extra container still exists after the desired set shrank (%v)", err)
	}

	// The agent dies; a new supervisor adopts keep by its labels.
	h1.abandon()
	h2 := newRealHarness(t, dir, map[string]Driver{DriverDocker: d})
	h2.run()
	got := h2.waitState("keep", StateRunning)
	if got.Ref != m["keep"].Ref {
		t.Errorf("keep: container %s, want the adopted %s", shortID(got.Ref), shortID(m["keep"].Ref))
	}
	if hs, _ := d.List(ctx); len(hs) != 1 {
		t.Errorf("%d containers after adoption, want 1 (no duplicate)", len(hs))
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h2.sup.StopAll(sctx); err != nil {
		t.Fatal(err)
	}
	if hs, _ := d.List(ctx); len(hs) != 0 {
		t.Errorf("containers left after StopAll: %d", len(hs))
	}
}

func TestDockerDetectDrivers(t *testing.T) {
	cli, _ := dockerForTest(t)
	got := DetectDrivers(context.Background(), cli, 2*time.Second)
	if strings.Join(got, ",") != "exec,docker" {
		t.Errorf("DetectDrivers = %v, want [exec docker]", got)
	}
}

func TestDetectDriversWithoutEngine(t *testing.T) {
	cli, err := client.NewClientWithOpts(client.WithHost("unix:///nonexistent/docker.sock"), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	got := DetectDrivers(context.Background(), cli, 500*time.Millisecond)
	if strings.Join(got, ",") != "exec" {
		t.Errorf("DetectDrivers = %v, want [exec]", got)
	}
}

func dockerForBench(b *testing.B) (*client.Client, string) { return dockerForTest(b) }
