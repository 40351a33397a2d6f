package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireDocker skips without an engine unless MURMUR_REQUIRE_DOCKER=1 (CI), and
// returns the test image (make test-image builds it).
func requireDocker(t *testing.T) string {
	t.Helper()
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		if os.Getenv("MURMUR_REQUIRE_DOCKER") == "1" {
			t.Fatalf("MURMUR_REQUIRE_DOCKER=1 but no Docker engine answers: %v\n%s", err, out)
		}
		t.Skipf("no Docker engine answers: %v", err)
	}
	img := os.Getenv("MURMUR_TEST_IMAGE")
	if img == "" {
		img = "murmur-workload:test"
	}
	if out, err := exec.Command("docker", "image", "inspect", img).CombinedOutput(); err != nil {
		t.Fatalf("test image %s is missing (make test-image builds it): %v\n%s", img, err, out)
	}
	return img
}

// containers lists the running containers a node's agent started for intent.
func containers(t *testing.T, node, intent string) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-q", "--filter", "label=murmur.node="+node, "--filter", "label=murmur.intent="+intent).Output()
	if err != nil {
		t.Logf("docker ps: %v", err)
		return nil
	}
	return strings.Fields(string(out))
}

// TestRealDockerWorkloadsFollowTheirHosts: the same lifecycle with driver docker and
// the FROM scratch test image: 2 replicas run as containers on 2 of 3 nodes, a host
// dies (agent and its containers) and they run elsewhere, delete removes them.
func TestRealDockerWorkloadsFollowTheirHosts(t *testing.T) {
	img := requireDocker(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "dk" + hex.EncodeToString(b)
	var names []string
	t.Cleanup(func() {
		for _, n := range names {
			ids, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=murmur.node="+n).Output()
			if f := strings.Fields(string(ids)); len(f) > 0 {
				_ = exec.Command("docker", append([]string{"rm", "-f"}, f...)...).Run()
			}
		}
	})
	seedPort := freePort(t)
	seed := fmt.Sprintf("127.0.0.1:%d", seedPort)
	var ps []*proc
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		names = append(names, name)
		port, extra := seedPort, []string{"--region", "dock"}
		if i > 1 {
			port, extra = freePort(t), append(extra, "--join", seed)
		}
		ps = append(ps, startAgent(t, name, port, extra...))
	}
	eventually(t, 60*time.Second, "a coordinator with 3 voters and docker on every node", func() bool {
		_, _, ok := agreedCoordinator(ps, "dock", 3)
		if !ok {
			return false
		}
		var res struct {
			Members []struct {
				Drivers []string `json:"drivers"`
			} `json:"members"`
		}
		if getJSON(ps[0].http, "/v1/members", &res) != nil || len(res.Members) != 3 {
			return false
		}
		for _, m := range res.Members {
			if !strings.Contains(strings.Join(m.Drivers, ","), "docker") {
				return false
			}
		}
		return true
	})
	postIntent(t, ps[0].http, []byte(`apiVersion: murmur/v1
kind: Workload
metadata: {name: cam}
spec:
  replicas: 2
  driver: docker
  image: `+img+`
  resources: {cpu: 50m, memory: 16Mi}
`), "")
	placed := func(live []*proc) map[string]int {
		out := map[string]int{}
		for _, p := range live {
			if n := len(containers(t, p.name, "cam")); n > 0 {
				out[p.name] = n
			}
		}
		return out
	}
	settled := func(live []*proc, what string) {
		t.Helper()
		eventually(t, 60*time.Second, what, func() bool {
			v, ok := workloadsOf(live[0].http, "")
			if !ok {
				return false
			}
			view, real := running(v, "cam"), placed(live)
			return total(view) == 2 && len(view) == 2 && maps(view, real)
		})
	}
	settled(ps, "cam as 2 containers on 2 nodes")

	coord, _, _ := agreedCoordinator(ps, "dock", 0)
	var victim *proc
	for n := range placed(ps) {
		if n != coord {
			for _, p := range ps {
				if p.name == n {
					victim = p
				}
			}
		}
	}
	if victim == nil {
		t.Fatalf("no non-coordinator node runs cam: %v", placed(ps))
	}
	_ = victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.done
	if ids := containers(t, victim.name, "cam"); len(ids) > 0 {
		if out, err := exec.Command("docker", append([]string{"kill"}, ids...)...).CombinedOutput(); err != nil {
			t.Fatalf("docker kill: %v\n%s", err, out)
		}
	}
	live := alive(ps)
	settled(live, "cam running as 2 containers on the survivors after "+victim.name+" died")

	if out, err := exec.Command(murmurBin(t), "delete", "cam", "--addr", live[0].http).CombinedOutput(); err != nil {
		t.Fatalf("delete cam: %v\n%s", err, out)
	}
	eventually(t, 60*time.Second, "no cam container left on the survivors", func() bool {
		return len(placed(live)) == 0
	})
}
