package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"
)

func workloadYAML(name string, replicas int) []byte {
	return []byte(fmt.Sprintf(`apiVersion: murmur/v1
kind: Workload
metadata: {name: %s}
spec:
  replicas: %d
  driver: exec
  command: ["/bin/sleep", "3600"]
  resources: {cpu: 50m, memory: 16Mi}
`, name, replicas))
}

type storedIntent struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Hash    string `json:"hash"`
	Origin  string `json:"origin"`
}

func postIntent(t *testing.T, addr string, body []byte, query string) []storedIntent {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/v1/intents"+query, "application/yaml", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /v1/intents to %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/intents to %s: HTTP %d: %s", addr, resp.StatusCode, b)
	}
	var res struct {
		Intents []storedIntent `json:"intents"`
	}
	if err := json.Unmarshal(b, &res); err != nil || len(res.Intents) != 1 {
		t.Fatalf("POST /v1/intents answer %s: %v", b, err)
	}
	return res.Intents
}

func intentOn(addr, name string) (storedIntent, bool) {
	var res struct {
		Intents []storedIntent `json:"intents"`
	}
	if err := getJSON(addr, "/v1/intents", &res); err != nil {
		return storedIntent{}, false
	}
	for _, in := range res.Intents {
		if in.Name == name {
			return in, true
		}
	}
	return storedIntent{}, false
}

func TestRealIntentsSpreadWinAndSurvive(t *testing.T) {
	seedPort := freePort(t)
	seed := fmt.Sprintf("127.0.0.1:%d", seedPort)
	ps := []*proc{startAgent(t, "i1", seedPort)}
	for i := 2; i <= 5; i++ {
		ps = append(ps, startAgent(t, fmt.Sprintf("i%d", i), freePort(t), "--join", seed))
	}
	for _, p := range ps {
		eventually(t, 30*time.Second, p.name+" sees 5 alive", func() bool {
			n := 0
			for _, m := range members(p.http) {
				if m.Status == "alive" {
					n++
				}
			}
			return n == 5
		})
	}

	// Push to node 3 and wait for the fleet: every node stores the same version.
	v1 := postIntent(t, ps[2].http, workloadYAML("vision", 2), "?wait=fleet&timeout=30s")[0]
	for _, p := range ps {
		got, ok := intentOn(p.http, "vision")
		if !ok || got.Version != v1.Version || got.Hash == "" {
			t.Fatalf("%s stores vision %+v (found %v) right after ?wait=fleet answered, want version %s", p.name, got, ok, v1.Version)
		}
	}
	// A later push to another node wins everywhere.
	v2 := postIntent(t, ps[4].http, workloadYAML("vision", 3), "")[0]
	if v2.Version == v1.Version {
		t.Fatalf("second push got the same version %s", v2.Version)
	}
	for _, p := range ps {
		eventually(t, 15*time.Second, p.name+" stores the second version "+v2.Version, func() bool {
			got, ok := intentOn(p.http, "vision")
			return ok && got.Version == v2.Version && got.Origin == "i5"
		})
	}

	// Stop node 2 gracefully; push while it is down; it catches up after a restart.
	down := ps[1]
	if err := down.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-down.done
	v3 := postIntent(t, ps[0].http, workloadYAML("while-down", 1), "")[0]
	back := restartAgent(t, down, down.gossipPort(), "--join", seed)
	eventually(t, 30*time.Second, "i2 catches up with while-down after its restart", func() bool {
		got, ok := intentOn(back.http, "while-down")
		return ok && got.Version == v3.Version
	})

	// kill -9 right after the 200: the intent is on disk.
	v4 := postIntent(t, ps[3].http, workloadYAML("durable", 1), "")[0]
	if err := ps[3].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ps[3].done
	again := restartAgent(t, ps[3], ps[3].gossipPort())
	eventually(t, 15*time.Second, "i4 still stores durable after kill -9 and restart", func() bool {
		got, ok := intentOn(again.http, "durable")
		return ok && got.Version == v4.Version
	})
}

// restartAgent starts a stopped agent again with the same name, gossip port and data dir.
func restartAgent(t *testing.T, old *proc, gossipPort int, extra ...string) *proc {
	t.Helper()
	return startAgentIn(t, old.name, gossipPort, old.dataDir, extra...)
}
