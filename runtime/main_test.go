package runtime

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// workloadPath is the test workload binary: MURMUR_WORKLOAD_BIN (set by
// make test) or built once into a temporary directory.
var workloadPath string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if dir := os.Getenv("MURMUR_TEST_AGENT_HELPER"); dir != "" {
		return agentHelper(dir) // a stand-in agent that starts one instance and waits to be killed
	}
	if p := os.Getenv("MURMUR_WORKLOAD_BIN"); p != "" {
		workloadPath = p
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "murmur-workload")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	workloadPath = filepath.Join(dir, "workload")
	cmd := exec.Command("go", "build", "-o", workloadPath, "../testdata/workload")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build test workload: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}
