package main

import (
	"github.com/murmur-edge/murmur/agent/secure"
	"os/signal"
	"syscall"

	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	goruntime "runtime"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-metrics"
	"github.com/murmur-edge/murmur/agent"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

const agentExamples = `  # A first node, alone until others join it
  murmur agent --name gw-1 --region factory-1 --data-dir /var/lib/murmur

  # Another node joins through any existing one (retried until it answers)
  murmur agent --name gw-2 --region factory-1 --join 10.0.0.11:7946 --label camera=yes

  # Several agents on one host (tests, demos): distinct ports, given capacity
  murmur agent --name n2 --bind 127.0.0.1:7956 --http 127.0.0.1:7071 \
    --join 127.0.0.1:7946 --capacity cpu=500m,memory=256Mi --data-dir /tmp/n2

  # The same from a file and the environment (flags win over MURMUR_*, which win over the file)
  MURMUR_REGION=depot-3 murmur agent --config /etc/murmur/agent.yaml`

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a murmur node",
		Long: `Run a murmur node: gossip membership, the intent store, the region's coordinator
election, the local supervisor, and the HTTP API with Prometheus metrics.

Every flag can also be set as a key of the YAML --config file (same name) or as a
MURMUR_* environment variable (upper case, '-' as '_'; repeatable flags take a
comma-separated list). Flags win over the environment, which wins over the file.`,
		Example: agentExamples,
		Args:    cobra.NoArgs,
	}
	hostname, _ := os.Hostname()
	f := cmd.Flags()
	f.String("config", "", "YAML file with agent settings (keys are the flag names)")
	f.String("name", hostname, "unique node name")
	f.String("region", "default", "region (site) of this node: a DNS label")
	f.StringArray("label", nil, "node label key=value (repeatable), used by workload constraints")
	f.String("bind", "0.0.0.0:7946", "gossip address host:port (UDP and TCP)")
	f.String("advertise", "", "gossip address peers reach this node at (default: derived from --bind)")
	f.StringArray("join", nil, "seed host:port of any fleet node (repeatable); retried with backoff until one answers")
	f.String("http", "127.0.0.1:7070", "HTTP API and metrics host:port")
	f.String("raft-bind", "", "Raft host:port (default: gossip port + 1)")
	f.String("data-dir", "/var/lib/murmur", "directory for durable state (node id, intents, Raft log, workloads)")
	f.String("capacity", "", "node capacity cpu=QUANTITY,memory=QUANTITY (default: detected from the host)")
	f.String("reserve", "", "resources kept for the OS and the agent, counted in the node's load (default cpu=100m,memory=64Mi)")
	f.String("encrypt", "", "base64 gossip encryption key (16, 24 or 32 bytes; 'murmur keygen' makes one); the first start writes it to <data-dir>/keyring.json, which wins from then on ('murmur keyring' rotates it)")
	f.String("tls-ca", "", "PEM file of the fleet CA ('murmur tls ca create'); with --tls-cert and --tls-key every agent-to-agent connection is mutual TLS")
	f.String("tls-cert", "", "PEM file of this node's certificate ('murmur tls cert create'); reloaded on SIGHUP or when the file changes")
	f.String("tls-key", "", "PEM file of this node's private key")
	f.Bool("insecure", false, "start beyond loopback without gossip encryption and TLS (trusted lab networks only; warns every minute)")
	f.String("profile", "lan", "failure-detection tuning: lan (fast, for site LANs) or wan (high-latency links)")
	f.String("log-level", "info", "debug, info, warn or error")
	f.String("log-format", "text", "text or json")
	f.String("api-token-file", "", "file with one bearer token of role admin (id \"api-token\"); with it every API request needs a token")
	f.String("acl-file", "", "YAML file of API tokens with roles read, write or admin (see README, API access); with it every API request needs a token")
	f.Bool("http-open-metrics", false, "leave /healthz and /metrics open when API tokens are enforced")
	f.StringArray("trust-key", nil, "file of an ed25519 public key; when set, only intents signed by a trusted key are accepted (repeatable)")
	f.Int("voters", 0, "Raft voters per region: 0 = automatic (3, or 5 in large regions), or 1, 3, 5")
	f.Int("bootstrap-expect", 0, "wait for this many eligible nodes before a region's first Raft bootstrap (0: bootstrap once the view settles); see docs/regions.md")
	f.Bool("coordinator-eligible", true, "may this node become a Raft voter and coordinator (false for weak devices)")
	f.Bool("witness", true, "offer to be a witness voter for other regions of two eligible nodes (docs/regions.md); needs --coordinator-eligible")
	f.StringArray("witness-for", nil, "region this node prefers to be a witness of (repeatable); it still serves others")
	f.Duration("lease", 4*time.Second, "lease of exclusive workloads: their instances stop a quarter of it before it runs out when the coordinator cannot renew it, and a lost node's are replaced once it has (2s to 5m)")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := layerSettings(cmd.Flags(), os.LookupEnv); err != nil {
			return usageError{err}
		}
		cfg, logger, err := agentConfig(cmd.Flags(), cmd.ErrOrStderr())
		if err != nil {
			return usageError{err}
		}
		// The agent coordinates; its workloads do the computing. One P keeps its Go
		// scheduler from spinning a second thread on every wake-up: -22 % idle CPU
		// (BENCHMARKS.md). GOMAXPROCS in the environment overrides it.
		if _, set := os.LookupEnv("GOMAXPROCS"); !set {
			goruntime.GOMAXPROCS(1)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		bridge, err := agent.NewGoMetricsBridge()
		if err != nil {
			return err
		}
		if _, err := metrics.NewGlobal(agent.GoMetricsConfig(), bridge.Sink); err != nil {
			return fmt.Errorf("install go-metrics sink: %w", err)
		}
		// SIGHUP reloads the TLS files (a file change does too, within 10 s). Caught from
		// here on, so a HUP while the agent starts does not end it.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		a, err := agent.New(cfg, agent.Deps{Logger: logger, Registerer: reg, Gatherer: prometheus.Gatherers{reg, bridge.Gatherer}})
		if err != nil {
			var fe *agent.FieldError
			if errors.As(err, &fe) {
				return usageError{err}
			}
			return err
		}
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				select {
				case <-hup:
					if cfg.TLS.Set() {
						_ = a.ReloadTLS() // logs and counts the outcome
					}
				case <-done:
					return
				}
			}
		}()
		return a.Run(cmd.Context())
	}
	return cmd
}

// layerSettings fills every flag the command line did not set from MURMUR_* variables,
// then from the --config file. Unknown keys and bad values are errors naming them.
func layerSettings(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	var file map[string]yaml.Node
	if path, _ := fs.GetString("config"); path != "" || envSet(lookupEnv, "config") {
		if path == "" {
			path, _ = lookupEnv(envName("config"))
		}
		var err error
		if file, err = readConfigFile(path, fs); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Changed || fl.Name == "config" {
			return
		}
		if v, ok := lookupEnv(envName(fl.Name)); ok {
			vals := []string{v}
			if isSlice(fl) {
				vals = splitList(v)
			}
			for _, s := range vals {
				if err := fs.Set(fl.Name, s); err != nil {
					errs = append(errs, fmt.Errorf("invalid %s=%q: %v", envName(fl.Name), v, err))
					return
				}
			}
			return
		}
		node, ok := file[fl.Name]
		if !ok {
			return
		}
		vals, err := yamlValues(fl, node)
		if err == nil {
			for _, s := range vals {
				if err = fs.Set(fl.Name, s); err != nil {
					break
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("config file: invalid %q (line %d): %v", fl.Name, node.Line, err))
		}
	})
	return errors.Join(errs...)
}

func readConfigFile(path string, fs *pflag.FlagSet) (map[string]yaml.Node, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("invalid --config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("invalid --config %s: %w", path, err)
	}
	out := map[string]yaml.Node{}
	if len(doc.Content) == 0 {
		return out, nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("invalid --config %s: want a mapping of setting names to values, e.g. 'region: factory-1'", path)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i].Value
		if fs.Lookup(k) == nil || k == "config" {
			return nil, fmt.Errorf("invalid --config %s: unknown key %q on line %d (valid keys: %s)", path, k, m.Content[i].Line, validKeys(fs))
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("invalid --config %s: key %q appears twice (line %d)", path, k, m.Content[i].Line)
		}
		out[k] = *m.Content[i+1]
	}
	return out, nil
}

func yamlValues(fl *pflag.Flag, n yaml.Node) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if isSlice(fl) {
			return splitList(n.Value), nil
		}
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		if !isSlice(fl) {
			return nil, errors.New("takes one value, not a list")
		}
		var out []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("list item on line %d is not a plain value", c.Line)
			}
			out = append(out, c.Value)
		}
		return out, nil
	case yaml.MappingNode:
		if fl.Name != "label" {
			return nil, errors.New("takes a value, not a mapping")
		}
		var out []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, n.Content[i].Value+"="+n.Content[i+1].Value)
		}
		return out, nil
	}
	return nil, errors.New("unsupported value")
}

func isSlice(fl *pflag.Flag) bool { return strings.HasSuffix(fl.Value.Type(), "Array") }

func envName(flag string) string {
	return "MURMUR_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func envSet(lookup func(string) (string, bool), flag string) bool {
	_, ok := lookup(envName(flag))
	return ok
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func validKeys(fs *pflag.FlagSet) string {
	var keys []string
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Name != "config" && fl.Name != "help" {
			keys = append(keys, fl.Name)
		}
	})
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// agentConfig turns the settled flags into an agent.Config and a logger.
func agentConfig(fs *pflag.FlagSet, stderr io.Writer) (agent.Config, *slog.Logger, error) {
	str := func(n string) string { v, _ := fs.GetString(n); return v }
	arr := func(n string) []string { v, _ := fs.GetStringArray(n); return v }
	var cfg agent.Config
	cfg.Name = str("name")
	cfg.Region = str("region")
	cfg.Bind = str("bind")
	cfg.Advertise = str("advertise")
	cfg.Join = arr("join")
	cfg.HTTP = str("http")
	cfg.RaftBind = str("raft-bind")
	cfg.DataDir = str("data-dir")
	cfg.Profile = str("profile")
	cfg.APITokenFile = str("api-token-file")
	cfg.ACLFile = str("acl-file")
	cfg.HTTPOpenMetrics, _ = fs.GetBool("http-open-metrics")
	cfg.TLS = secure.TLSFiles{CA: str("tls-ca"), Cert: str("tls-cert"), Key: str("tls-key")}
	cfg.Insecure, _ = fs.GetBool("insecure")
	cfg.TrustKeys = arr("trust-key")
	cfg.Voters, _ = fs.GetInt("voters")
	cfg.BootstrapExpect, _ = fs.GetInt("bootstrap-expect")
	cfg.CoordinatorEligible, _ = fs.GetBool("coordinator-eligible")
	witness, _ := fs.GetBool("witness")
	cfg.NoWitness = !witness
	cfg.WitnessFor = arr("witness-for")
	cfg.Lease, _ = fs.GetDuration("lease")
	labels, err := agent.ParseLabels(arr("label"))
	if err != nil {
		return cfg, nil, err
	}
	cfg.Labels = labels
	if s := str("capacity"); s != "" {
		if cfg.Capacity, err = agent.ParseResources(s, agent.Resources{}); err != nil {
			return cfg, nil, &agent.FieldError{Field: "capacity", Err: err}
		}
		if cfg.Capacity.MilliCPU == 0 || cfg.Capacity.MemoryBytes == 0 {
			det, derr := agent.DetectCapacity()
			if derr != nil {
				return cfg, nil, &agent.FieldError{Field: "capacity", Err: derr}
			}
			if cfg.Capacity.MilliCPU == 0 {
				cfg.Capacity.MilliCPU = det.MilliCPU
			}
			if cfg.Capacity.MemoryBytes == 0 {
				cfg.Capacity.MemoryBytes = det.MemoryBytes
			}
		}
	}
	if s := str("reserve"); s != "" {
		if cfg.Reserve, err = agent.ParseResources(s, agent.DefaultReserve()); err != nil {
			return cfg, nil, &agent.FieldError{Field: "reserve", Err: err}
		}
	}
	if s := str("encrypt"); s != "" {
		if cfg.EncryptKey, err = base64.StdEncoding.DecodeString(strings.TrimSpace(s)); err != nil {
			return cfg, nil, &agent.FieldError{Field: "encrypt", Err: fmt.Errorf("not base64: %v (make a key with 'murmur keygen')", err)}
		}
	}
	logger, err := newLogger(str("log-level"), str("log-format"), stderr)
	if err != nil {
		return cfg, nil, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, err
	}
	return cfg, logger, nil
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, &agent.FieldError{Field: "log-level", Err: fmt.Errorf("%q: use debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, &agent.FieldError{Field: "log-format", Err: fmt.Errorf("%q: use text or json", format)}
}
