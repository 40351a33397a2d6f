package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// Labels on every container murmur creates.
const (
	LabelOwner      = "murmur.owner"
	LabelNode       = "murmur.node"
	LabelIntent     = "murmur.intent"
	LabelInstance   = "murmur.instance"
	LabelGeneration = "murmur.generation"
	LabelSpecHash   = "murmur.spec-hash"
)

// DockerConfig configures the docker driver.
type DockerConfig struct {
	// Client talks to the engine; nil means NewDockerClient().
	Client *client.Client
	// Node is this node's name (label murmur.node; several agents may share
	// one engine, each sees only its own containers).
	Node string
	// Owner is the value of label murmur.owner (default "murmur"). Tests use
	// a unique owner so that they never touch each other's containers.
	Owner  string
	Logger *slog.Logger
}

// DockerDriver runs instances as containers. Containers carry the murmur
// labels and restart policy "no" (the supervisor restarts them); images are
// never pulled. It holds no mutable state; safe for concurrent use.
type DockerDriver struct {
	cli   *client.Client
	node  string
	owner string
	log   *slog.Logger
}

var (
	_ Driver            = (*DockerDriver)(nil)
	_ InContainerExecer = (*DockerDriver)(nil)
)

// NewDockerClient returns a client configured from the environment
// (DOCKER_HOST etc.) that negotiates the API version with the engine.
func NewDockerClient() (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return cli, nil
}

// NewDockerDriver returns the driver; it does not contact the engine.
func NewDockerDriver(cfg DockerConfig) (*DockerDriver, error) {
	if cfg.Client == nil {
		cli, err := NewDockerClient()
		if err != nil {
			return nil, err
		}
		cfg.Client = cli
	}
	if cfg.Owner == "" {
		cfg.Owner = "murmur"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &DockerDriver{cli: cfg.Client, node: cfg.Node, owner: cfg.Owner, log: cfg.Logger}, nil
}

// Name implements Driver.
func (d *DockerDriver) Name() string { return DriverDocker }

// Start implements Driver: check the image is present (no pull), create the
// container with labels and limits, start it.
func (d *DockerDriver) Start(ctx context.Context, spec InstanceSpec) (Handle, error) {
	if err := spec.Validate(); err != nil {
		return Handle{}, err
	}
	if _, err := d.cli.ImageInspect(ctx, spec.Image); err != nil {
		if client.IsErrNotFound(err) {
			return Handle{}, fmt.Errorf("%w: image %s not present on node %s", ErrInvalidSpec, spec.Image, d.node)
		}
		return Handle{}, fmt.Errorf("inspect image %s: %w", spec.Image, err)
	}
	h := Handle{Driver: DriverDocker, InstanceID: spec.ID, Intent: spec.Intent, Generation: spec.Generation, SpecHash: spec.Hash()}
	env := make([]string, 0, len(spec.Env))
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	cfg := &container.Config{
		Image: spec.Image,
		Env:   env,
		Labels: map[string]string{
			LabelOwner:      d.owner,
			LabelNode:       d.node,
			LabelIntent:     spec.Intent,
			LabelInstance:   spec.ID,
			LabelGeneration: strconv.FormatUint(spec.Generation, 10),
			LabelSpecHash:   h.SpecHash,
		},
	}
	if len(spec.Command) > 0 {
		cfg.Cmd = spec.Command
	}
	hc := &container.HostConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Resources: container.Resources{
			NanoCPUs: spec.Resources.MilliCPU * 1_000_000,
			Memory:   spec.Resources.MemoryBytes,
		},
	}
	created, err := d.cli.ContainerCreate(ctx, cfg, hc, nil, nil, "")
	if err != nil {
		if cerrdefs.IsInvalidArgument(err) {
			return Handle{}, fmt.Errorf("%w: instance %q: create container: %v", ErrInvalidSpec, spec.ID, err)
		}
		return Handle{}, fmt.Errorf("create container for %q: %w", spec.ID, err)
	}
	h.Ref = created.ID
	if err := d.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		rmErr := d.cli.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
		if rmErr != nil {
			d.log.Warn("docker driver: remove container that failed to start", "id", created.ID, "err", rmErr)
		}
		if cerrdefs.IsInvalidArgument(err) || cerrdefs.IsNotFound(err) {
			return Handle{}, fmt.Errorf("%w: instance %q: start container: %v", ErrInvalidSpec, spec.ID, err)
		}
		return Handle{}, fmt.Errorf("start container for %q: %w", spec.ID, err)
	}
	h.StartedAt = time.Now()
	h.Running = true
	return h, nil
}

// Wait implements Driver.
func (d *DockerDriver) Wait(ctx context.Context, h Handle) (ExitStatus, error) {
	respC, errC := d.cli.ContainerWait(ctx, h.Ref, container.WaitConditionNotRunning)
	select {
	case r := <-respC:
		es := ExitStatus{Code: int(r.StatusCode)}
		if r.Error != nil && r.Error.Message != "" {
			d.log.Warn("docker driver: wait", "id", h.Ref, "err", r.Error.Message)
		}
		if ins, err := d.cli.ContainerInspect(ctx, h.Ref); err == nil && ins.State != nil {
			es.OOMKilled = ins.State.OOMKilled
		}
		return es, nil
	case err := <-errC:
		if ctx.Err() != nil {
			return ExitStatus{}, ctx.Err()
		}
		if client.IsErrNotFound(err) {
			return ExitStatus{Code: -1}, nil
		}
		return ExitStatus{}, fmt.Errorf("wait for container %s: %w", shortID(h.Ref), err)
	}
}

// Stop implements Driver: stop with grace, then remove the container.
func (d *DockerDriver) Stop(ctx context.Context, h Handle, grace time.Duration) error {
	secs := int((grace + time.Second - 1) / time.Second)
	err := d.cli.ContainerStop(ctx, h.Ref, container.StopOptions{Timeout: &secs})
	if err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("stop container %s: %w", shortID(h.Ref), err)
	}
	err = d.cli.ContainerRemove(ctx, h.Ref, container.RemoveOptions{Force: true})
	if err != nil && !client.IsErrNotFound(err) && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("remove container %s: %w", shortID(h.Ref), err)
	}
	return nil
}

// List implements Driver: every container labelled with this owner and node.
func (d *DockerDriver) List(ctx context.Context) ([]Handle, error) {
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{
		All: true,
		Filters: filters.NewArgs(
			filters.Arg("label", LabelOwner+"="+d.owner),
			filters.Arg("label", LabelNode+"="+d.node),
		),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]Handle, 0, len(cs))
	for _, c := range cs {
		gen, _ := strconv.ParseUint(c.Labels[LabelGeneration], 10, 64)
		out = append(out, Handle{
			Driver:     DriverDocker,
			InstanceID: c.Labels[LabelInstance],
			Intent:     c.Labels[LabelIntent],
			Generation: gen,
			SpecHash:   c.Labels[LabelSpecHash],
			Ref:        c.ID,
			Running:    c.State == container.StateRunning,
			StartedAt:  time.Unix(c.Created, 0),
		})
	}
	return out, nil
}

// Usage implements Driver from one engine stats sample.
func (d *DockerDriver) Usage(ctx context.Context, h Handle) (Usage, error) {
	r, err := d.cli.ContainerStatsOneShot(ctx, h.Ref)
	if err != nil {
		return Usage{}, fmt.Errorf("stats of container %s: %w", shortID(h.Ref), err)
	}
	defer r.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&st); err != nil {
		return Usage{}, fmt.Errorf("decode stats of container %s: %w", shortID(h.Ref), err)
	}
	return usageFromStats(st), nil
}

// usageFromStats follows the docker CLI: memory is usage minus inactive
// page cache.
func usageFromStats(st container.StatsResponse) Usage {
	mem := st.MemoryStats.Usage
	inactive := st.MemoryStats.Stats["total_inactive_file"] // cgroup v1
	if v, ok := st.MemoryStats.Stats["inactive_file"]; ok && inactive == 0 {
		inactive = v // cgroup v2
	}
	if inactive < mem {
		mem -= inactive
	}
	return Usage{CPUTime: time.Duration(st.CPUStats.CPUUsage.TotalUsage), MemoryBytes: int64(mem)}
}

// ExecIn implements InContainerExecer: run argv inside the container and
// return its exit status.
func (d *DockerDriver) ExecIn(ctx context.Context, h Handle, argv []string) (int, error) {
	ex, err := d.cli.ContainerExecCreate(ctx, h.Ref, container.ExecOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", shortID(h.Ref), err)
	}
	att, err := d.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", shortID(h.Ref), err)
	}
	stop := context.AfterFunc(ctx, att.Close)
	_, _ = io.Copy(io.Discard, att.Reader)
	stop()
	att.Close()
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	ins, err := d.cli.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", shortID(h.Ref), err)
	}
	if ins.Running {
		return -1, errors.New("exec in container: still running after its output closed")
	}
	return ins.ExitCode, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// DetectDrivers reports the drivers that work on this node: exec always;
// docker only when an engine answers a ping within timeout (default 2s).
func DetectDrivers(ctx context.Context, cli *client.Client, timeout time.Duration) []string {
	drivers := []string{DriverExec}
	if cli == nil {
		c, err := NewDockerClient()
		if err != nil {
			return drivers
		}
		defer c.Close()
		cli = c
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Ping(pctx); err == nil {
		drivers = append(drivers, DriverDocker)
	}
	return drivers
}
