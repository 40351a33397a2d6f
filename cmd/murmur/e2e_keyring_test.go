package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	e2eKeyOld = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	e2eKeyNew = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
)

func policyYAML(name string) []byte {
	return []byte(fmt.Sprintf("apiVersion: murmur/v1\nkind: Policy\nmetadata: {name: %s}\nspec:\n  offload: {cpuAbove: 0.85}\n", name))
}

// keyringOf answers GET /v1/keyring of addr.
func keyringOf(addr string) (keyringAnswer, error) {
	var a keyringAnswer
	c := http.Client{Timeout: 15 * time.Second}
	resp, err := c.Get("http://" + addr + "/v1/keyring")
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("HTTP %d %s: %v", resp.StatusCode, b, err)
	}
	if resp.StatusCode != 200 {
		return a, fmt.Errorf("HTTP %d: %s", resp.StatusCode, a.Error)
	}
	return a, nil
}

// murmurCLI runs the built binary as a client and returns its output and exit code.
func murmurCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, murmurBin(t), args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("murmur %v: %v", args, err)
	}
	return string(out), code
}

// startEncryptedFleet starts n agents with --encrypt key, joined through the first,
// and waits until each sees n alive.
func startEncryptedFleet(t *testing.T, prefix string, n int, key string) []*proc {
	t.Helper()
	seedPort := freePort(t)
	seed := fmt.Sprintf("127.0.0.1:%d", seedPort)
	ps := []*proc{startAgent(t, prefix+"1", seedPort, "--encrypt", key)}
	for i := 2; i <= n; i++ {
		ps = append(ps, startAgent(t, fmt.Sprintf("%s%d", prefix, i), freePort(t), "--encrypt", key, "--join", seed))
	}
	for _, p := range ps {
		eventually(t, 30*time.Second, p.name+fmt.Sprintf(" sees %d alive", n), func() bool {
			alive := 0
			for _, m := range members(p.http) {
				if m.Status == "alive" {
					alive++
				}
			}
			return alive == n
		})
	}
	return ps
}

// TestRealKeyringRotationUnderLoad: key rotation on a 5-agent fleet while intents
// are pushed: no node leaves or is suspected dead, no acknowledged intent is lost,
// and every node ends with only the new key, on disk too. A restarted node keeps the
// rotated keyring although its flags still give the old key.
func TestRealKeyringRotationUnderLoad(t *testing.T) {
	ps := startEncryptedFleet(t, "r", 5, e2eKeyOld)
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.name
	}

	// Watch every node's view: a member of the fleet dead or left is a failure; a
	// suspicion (memberlist's own, which a starved CPU can cause) is logged.
	stop := make(chan struct{})
	var watchWG sync.WaitGroup
	var badMu sync.Mutex
	var bad []string
	for _, p := range ps {
		watchWG.Add(1)
		go func() {
			defer watchWG.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				for name, m := range members(p.http) {
					if !slices.Contains(names, name) || m.Status == "alive" {
						continue
					}
					if m.Status == "suspect" {
						t.Logf("%s saw %s suspect", p.name, name)
						continue
					}
					badMu.Lock()
					bad = append(bad, fmt.Sprintf("%s saw %s %s", p.name, name, m.Status))
					badMu.Unlock()
				}
			}
		}()
	}

	stopWatching := sync.OnceFunc(func() { close(stop); watchWG.Wait() })
	defer stopWatching() // on a t.Fatal too: the watchers log through t

	// One pusher per node pushes intents, a bounded number, from before the rotation
	// until after it: at least 10 each once the rotation is over.
	type ack struct {
		name string
		at   time.Time
	}
	var ackMu sync.Mutex
	var acked []ack
	var pushWG sync.WaitGroup
	rotated := make(chan struct{})
	pushing := make(chan struct{}) // closed at the 5th acknowledgement
	endPushing := sync.OnceFunc(func() { close(rotated); pushWG.Wait() })
	defer endPushing()
	for j, p := range ps {
		pushWG.Add(1)
		go func() {
			defer pushWG.Done()
			c := http.Client{Timeout: 10 * time.Second}
			after := 0
			for i := 0; i < 200 && after < 10; i++ {
				select {
				case <-rotated:
					after++
				default:
				}
				name := fmt.Sprintf("rot-%d-%03d", j, i)
				resp, err := c.Post("http://"+p.http+"/v1/intents", "application/yaml", bytes.NewReader(policyYAML(name)))
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated {
					ackMu.Lock()
					if acked = append(acked, ack{name, time.Now()}); len(acked) == 5 {
						close(pushing)
					}
					ackMu.Unlock()
				}
			}
		}()
	}
	select {
	case <-pushing:
	case <-time.After(30 * time.Second):
		t.Fatal("no 5 intents acknowledged within 30 s before the rotation")
	}

	rotStart := time.Now()
	out, code := murmurCLI(t, "keyring", "install", e2eKeyNew, "--addr", ps[0].http)
	if code != 0 || !strings.Contains(out, "installed the key on 5 of 5 nodes") {
		t.Fatalf("keyring install: exit %d\n%s", code, out)
	}
	start := time.Now()
	out, code = murmurCLI(t, "keyring", "use", e2eKeyNew, "--addr", ps[2].http)
	useTook := time.Since(start)
	if code != 0 || !strings.Contains(out, "switched to the key on 5 of 5 nodes") {
		t.Fatalf("keyring use: exit %d\n%s", code, out)
	}
	out, code = murmurCLI(t, "keyring", "remove", e2eKeyOld, "--addr", ps[4].http)
	if code != 0 || !strings.Contains(out, "removed the key from 5 of 5 nodes") {
		t.Fatalf("keyring remove: exit %d\n%s", code, out)
	}
	// Refused: removing the key every node encrypts with.
	if out, code = murmurCLI(t, "keyring", "remove", e2eKeyNew, "--addr", ps[1].http); code != 2 || !strings.Contains(out, "primary") {
		t.Errorf("remove of the primary key: exit %d, want 2\n%s", code, out)
	}
	rotEnd := time.Now()
	endPushing()
	during := 0
	for _, a := range acked {
		if a.at.After(rotStart) && a.at.Before(rotEnd) {
			during++
		}
	}
	t.Logf("rotation with intents pushed: install → use → remove took %v, 'murmur keyring use' (every node switched) %v; %d intents acknowledged, %d of them during the rotation",
		rotEnd.Sub(rotStart), useTook, len(acked), during)
	if during == 0 {
		t.Errorf("no intent was acknowledged during the rotation: the test did not test it")
	}

	for _, p := range ps {
		eventually(t, 30*time.Second, p.name+" stores every acknowledged intent", func() bool {
			var res struct {
				Intents []storedIntent `json:"intents"`
			}
			if getJSON(p.http, "/v1/intents", &res) != nil {
				return false
			}
			have := map[string]bool{}
			for _, in := range res.Intents {
				have[in.Name] = true
			}
			for _, a := range acked {
				if !have[a.name] {
					return false
				}
			}
			return true
		})
	}
	stopWatching()
	if len(bad) > 0 {
		t.Errorf("members dead or left during the rotation: %v", bad[:min(len(bad), 10)])
	}
	for _, p := range ps {
		a, err := keyringOf(p.http)
		if err != nil || len(a.Keys) != 1 || a.Keys[0].Key != e2eKeyNew || a.Keys[0].Nodes != 5 || a.Keys[0].Primary != 5 {
			t.Errorf("GET /v1/keyring on %s: %+v, %v; want only the new key, on 5 of 5", p.name, a, err)
		}
		b, err := os.ReadFile(filepath.Join(p.dataDir, "keyring.json"))
		if err != nil || !strings.Contains(string(b), e2eKeyNew) || strings.Contains(string(b), e2eKeyOld) {
			t.Errorf("%s's keyring.json: %s (%v), want only the new key", p.name, b, err)
		}
	}
	out, code = murmurCLI(t, "keyring", "list", "--addr", ps[3].http)
	if code != 0 || !strings.Contains(out, e2eKeyNew+"  5/5    5/5") {
		t.Errorf("keyring list: exit %d\n%s", code, out)
	}

	// Restarted with its old flags, a node keeps the rotated keyring and rejoins.
	old := ps[1]
	if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-old.done
	back := restartAgent(t, old, old.gossipPort(), "--encrypt", e2eKeyOld, "--join", ps[0].gossip)
	eventually(t, 30*time.Second, "the restarted node is alive everywhere", func() bool {
		for _, p := range append([]*proc{back}, ps[2:]...) {
			if members(p.http)[old.name].Status != "alive" {
				return false
			}
		}
		return true
	})
	if !strings.Contains(back.logs(), "the keyring wins") {
		t.Errorf("the restarted node did not warn that its keyring file wins over --encrypt")
	}
}

// TestRealKeyringNodeDownDuringRotation: a node stopped during a rotation cannot
// rejoin with its old keyring once the old key is removed; with a copy of a live
// node's keyring.json it rejoins (docs/security.md).
func TestRealKeyringNodeDownDuringRotation(t *testing.T) {
	ps := startEncryptedFleet(t, "d", 3, e2eKeyOld)
	down := ps[2]
	if err := down.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-down.done
	eventually(t, 15*time.Second, "d1 sees d3 left", func() bool { return members(ps[0].http)["d3"].Status == "left" })
	for _, step := range [][]string{{"install", e2eKeyNew}, {"use", e2eKeyNew}, {"remove", e2eKeyOld}} {
		out, code := murmurCLI(t, "keyring", step[0], step[1], "--addr", ps[0].http)
		if code != 0 || !strings.Contains(out, "of 2 nodes") || !strings.Contains(out, "not asked (dead or left): d3") {
			t.Fatalf("keyring %s with d3 down: exit %d\n%s", step[0], code, out)
		}
	}
	stale := restartAgent(t, down, down.gossipPort(), "--join", ps[0].gossip)
	eventually(t, 20*time.Second, "d3 logs that it cannot join with the old key", func() bool {
		return strings.Contains(stale.logs(), "join failed")
	})
	if s := members(ps[0].http)["d3"].Status; s == "alive" {
		t.Fatalf("d3 rejoined with a removed key")
	}
	if err := stale.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-stale.done
	b, err := os.ReadFile(filepath.Join(ps[0].dataDir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(down.dataDir, "keyring.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	fixed := restartAgent(t, down, down.gossipPort(), "--join", ps[0].gossip)
	eventually(t, 30*time.Second, "d3 rejoins with the copied keyring", func() bool {
		return members(ps[0].http)["d3"].Status == "alive" && members(fixed.http)["d1"].Status == "alive"
	})
}

// TestRealKeyringRotationTime measures a fleet-wide rotation on real agents: the time
// 'use' takes until every node answered that it encrypts with the new key, and the
// whole install → use → remove, over HTTP. It runs only when MURMUR_KEYRING_ROUNDS is
// set (rounds; MURMUR_KEYRING_NODES, default 5, agents):
//
//	MURMUR_KEYRING_ROUNDS=20 go test -run TestRealKeyringRotationTime -v ./cmd/murmur/
func TestRealKeyringRotationTime(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("MURMUR_KEYRING_ROUNDS"))
	if rounds <= 0 {
		t.Skip("set MURMUR_KEYRING_ROUNDS to measure")
	}
	n := 5
	if s := os.Getenv("MURMUR_KEYRING_NODES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	ps := startEncryptedFleet(t, "t", n, e2eKeyOld)
	post := func(p *proc, op, key string) time.Duration {
		t.Helper()
		start := time.Now()
		resp, err := http.Post("http://"+p.http+"/v1/keyring/"+op+"?timeout=30s", "application/json", strings.NewReader(`{"key":"`+key+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		var a keyringAnswer
		_ = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if resp.StatusCode != 200 || a.Answered != n {
			t.Fatalf("%s: HTTP %d %+v", op, resp.StatusCode, a)
		}
		return took
	}
	var use, all []time.Duration
	old := e2eKeyOld
	for i := 0; i < rounds; i++ {
		next := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%032d", i)))
		start := time.Now()
		post(ps[i%n], "install", next)
		use = append(use, post(ps[(i+1)%n], "use", next))
		post(ps[(i+2)%n], "remove", old)
		all = append(all, time.Since(start))
		old = next
	}
	for _, p := range ps {
		if s := members(ps[0].http)[p.name].Status; s != "alive" {
			t.Errorf("%s is %s after the rotations", p.name, s)
		}
	}
	t.Logf("%d agents, %d rotations: use (every node switched) p50 %v max %v; install+use+remove p50 %v max %v",
		n, rounds, pct(use, 50), pct(use, 100), pct(all, 50), pct(all, 100))
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)].Round(100 * time.Microsecond)
}
