package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func agentFlags(t testing.TB) *cobra.Command { return newAgentCmd() }

func TestLayerSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "agent.yaml")
	yaml := "region: from-file\nhttp: 127.0.0.1:9000\nlabel: {camera: \"yes\", zone: a}\njoin: [10.0.0.1:7946, 10.0.0.2:7946]\nvoters: 3\n"
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := agentFlags(t)
	fs := cmd.Flags()
	if err := fs.Parse([]string{"--config", cfgPath, "--http", "127.0.0.1:9100", "--data-dir", dir}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MURMUR_REGION": "from-env", "MURMUR_HTTP": "127.0.0.1:9200"}
	if err := layerSettings(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := agentConfig(fs, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP != "127.0.0.1:9100" {
		t.Errorf("http = %q, want the flag's 127.0.0.1:9100 (flags win)", cfg.HTTP)
	}
	if cfg.Region != "from-env" {
		t.Errorf("region = %q, want from-env (env wins over the file)", cfg.Region)
	}
	if len(cfg.Join) != 2 || cfg.Labels["camera"] != "yes" || cfg.Labels["zone"] != "a" || cfg.Voters != 3 {
		t.Errorf("from the file: join %v, labels %v, voters %d", cfg.Join, cfg.Labels, cfg.Voters)
	}
}

func TestConfigFileErrorsNameTheKey(t *testing.T) {
	cases := map[string]string{
		"bindd: 1.2.3.4:5\n":        `unknown key "bindd" on line 1`,
		"region: a\nregion: b\n":    `key "region" appears twice`,
		"join: {a: b}\n":            `invalid "join"`,
		"voters: [1, 2]\n":          `invalid "voters"`,
		"- just\n- a list\n":        "want a mapping",
		"region: [unclosed\n":       "invalid --config",
		"voters: many\n":            `invalid "voters"`,
		"coordinator-eligible: 7\n": `invalid "coordinator-eligible"`,
	}
	for body, want := range cases {
		t.Run(strings.TrimSpace(body), func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "c.yaml")
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			fs := agentFlags(t).Flags()
			if err := fs.Parse([]string{"--config", p}); err != nil {
				t.Fatal(err)
			}
			err := layerSettings(fs, func(string) (string, bool) { return "", false })
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("layerSettings(%q) = %v, want an error containing %q", body, err, want)
			}
		})
	}
}

// FuzzConfigLoader feeds arbitrary bytes to the --config loader and the flag layering:
// it must return a value or an error, never panic, and never accept an unknown key.
func FuzzConfigLoader(f *testing.F) {
	f.Add([]byte("region: factory-1\nlabel: {camera: \"yes\"}\njoin: [127.0.0.1:7946]\n"))
	f.Add([]byte("name: n1\nvoters: 3\ncoordinator-eligible: false\ncapacity: cpu=500m,memory=256Mi\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("bogus: 1\n"))
	f.Add([]byte("{{{"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body []byte) {
		p := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		fs := newAgentCmd().Flags()
		if err := fs.Parse([]string{"--config", p}); err != nil {
			t.Fatal(err)
		}
		if err := layerSettings(fs, func(string) (string, bool) { return "", false }); err != nil {
			return
		}
		if strings.HasPrefix(string(body), "bogus:") {
			t.Fatalf("accepted a config whose first key is the unknown key bogus: %q", body)
		}
		_, _, _ = agentConfig(fs, os.Stderr)
	})
}
