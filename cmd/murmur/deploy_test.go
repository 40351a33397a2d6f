package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// The files under deploy/ are what operators install. These tests keep them in step
// with the agent's flags, so they never rot.

const (
	exampleConfig = "../../deploy/config.example.yaml"
	serviceUnit   = "../../deploy/murmur.service"
	dockerfile    = "../../deploy/Dockerfile"
)

// loadAgentArgs parses args as `murmur agent` does (flags, then MURMUR_* from env,
// then the --config file) and builds the agent's Config.
func loadAgentArgs(t *testing.T, args []string, env map[string]string) (*pflag.FlagSet, error) {
	t.Helper()
	fs := newAgentCmd().Flags()
	if err := fs.Parse(args); err != nil {
		return fs, err
	}
	if err := layerSettings(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		return fs, err
	}
	_, _, err := agentConfig(fs, os.Stderr)
	return fs, err
}

// TestExampleConfigLoads loads deploy/config.example.yaml with the real loader and
// checks that it mentions every agent flag, set or commented out.
func TestExampleConfigLoads(t *testing.T) {
	fs, err := loadAgentArgs(t, []string{"--config", exampleConfig}, nil)
	if err != nil {
		t.Fatalf("the example config does not load: %v", err)
	}
	cfg, _, err := agentConfig(fs, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "factory-1" || len(cfg.Join) != 2 || cfg.Labels["camera"] != "yes" || cfg.TLS.CA == "" || cfg.ACLFile == "" || !cfg.HTTPOpenMetrics {
		t.Errorf("example config read as %+v", cfg)
	}
	b, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Name == "config" || fl.Name == "help" {
			return
		}
		if !regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(fl.Name) + `:`).Match(b) {
			t.Errorf("deploy/config.example.yaml does not mention %q (%s): add it, set or commented out", fl.Name, fl.Usage)
		}
	})
	// Commented keys must load too once uncommented (their example values are valid).
	var uncommented []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	keyLine := regexp.MustCompile(`^# ([a-z-]+):( .*)?$`)
	listItem := regexp.MustCompile(`^#   - .*$`)
	for sc.Scan() {
		line := sc.Text()
		switch m := keyLine.FindStringSubmatch(line); {
		case m != nil && fs.Lookup(m[1]) != nil && !strings.Contains(line, "<"):
			uncommented = append(uncommented, strings.TrimPrefix(line, "# "))
		case listItem.MatchString(line) && len(uncommented) > 0 && strings.HasSuffix(uncommented[len(uncommented)-1], ":"):
			uncommented = append(uncommented, strings.TrimPrefix(line, "#"))
		}
	}
	p := filepath.Join(t.TempDir(), "uncommented.yaml")
	if err := os.WriteFile(p, []byte(strings.Join(uncommented, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadAgentArgs(t, []string{"--config", p}, nil); err != nil {
		t.Errorf("the commented-out examples do not load: %v\n%s", err, strings.Join(uncommented, "\n"))
	}
}

// execStart returns the arguments of the unit's ExecStart line.
func execStart(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(serviceUnit)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			if found != nil {
				t.Fatal("two ExecStart lines")
			}
			found = strings.Fields(rest)
		}
	}
	if len(found) < 2 {
		t.Fatalf("no ExecStart with arguments in %s", serviceUnit)
	}
	return found
}

// TestServiceUnitFlags: the unit's ExecStart runs `murmur agent` with flags the agent
// accepts (its --config replaced by the example config), and its data dir is the
// unit's StateDirectory.
func TestServiceUnitFlags(t *testing.T) {
	args := execStart(t)
	if args[0] != "/usr/local/bin/murmur" || args[1] != "agent" {
		t.Fatalf("ExecStart runs %v, want /usr/local/bin/murmur agent", args[:2])
	}
	flags := append([]string(nil), args[2:]...)
	for i := range flags {
		if flags[i] == "--config" && i+1 < len(flags) {
			flags[i+1] = exampleConfig
		}
	}
	fs, err := loadAgentArgs(t, flags, map[string]string{"MURMUR_ENCRYPT": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="})
	if err != nil {
		t.Fatalf("ExecStart's flags %v: %v", flags, err)
	}
	if dd, _ := fs.GetString("data-dir"); dd != "/var/lib/murmur" {
		t.Errorf("data dir %q, want /var/lib/murmur (StateDirectory=murmur)", dd)
	}
	b, _ := os.ReadFile(serviceUnit)
	for _, want := range []string{"StateDirectory=murmur\n", "Restart=on-failure\n", "KillMode=process\n", "RestartPreventExitStatus=2\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
}

// TestServiceUnitVerifies runs `systemd-analyze verify` on the unit, with ExecStart
// pointing at the binary under test; any complaint fails. Skipped where systemd's
// tools are not installed.
func TestServiceUnitVerifies(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	b, err := os.ReadFile(serviceUnit)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "murmur.service")
	if err := os.WriteFile(unit, []byte(strings.Replace(string(b), "ExecStart=/usr/local/bin/murmur ", "ExecStart="+murmurBin(t)+" ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDockerfileCmd: the image's default command is one the agent accepts.
func TestDockerfileCmd(t *testing.T) {
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var cmd, entry []string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "CMD "); ok {
			if err := json.Unmarshal([]byte(rest), &cmd); err != nil {
				t.Fatalf("CMD %s: %v", rest, err)
			}
		}
		if rest, ok := strings.CutPrefix(line, "ENTRYPOINT "); ok {
			if err := json.Unmarshal([]byte(rest), &entry); err != nil {
				t.Fatalf("ENTRYPOINT %s: %v", rest, err)
			}
		}
	}
	if len(entry) != 1 || !strings.HasSuffix(entry[0], "/murmur") || len(cmd) < 1 || cmd[0] != "agent" {
		t.Fatalf("ENTRYPOINT %v CMD %v, want the murmur binary and agent", entry, cmd)
	}
	if _, err := loadAgentArgs(t, cmd[1:], nil); err != nil {
		t.Errorf("the image's CMD %v: %v", cmd, err)
	}
	if !strings.Contains(string(b), "FROM scratch\n") || strings.Contains(string(b), "\nRUN ") {
		t.Error("the image must be FROM scratch with no RUN step")
	}
}
