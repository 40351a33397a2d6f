package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// clientFlags are the flags every API client command shares.
type clientFlags struct {
	Addr   string // host:port or URL of an agent's HTTP API
	Output string // table | json (| yaml where supported)
	Token  string // bearer token (agents with --acl-file or --api-token-file)
}

func (c *clientFlags) register(fs *pflag.FlagSet, outputs ...string) {
	c.registerConn(fs)
	fs.StringVarP(&c.Output, "output", "o", "table", "output format: "+strings.Join(append([]string{"table", "json"}, outputs...), ", "))
}

// registerConn registers --addr and --token only (commands without -o).
func (c *clientFlags) registerConn(fs *pflag.FlagSet) {
	def := os.Getenv("MURMUR_ADDR")
	if def == "" {
		def = "127.0.0.1:7070"
	}
	fs.StringVar(&c.Addr, "addr", def, "agent HTTP API host:port or URL (env MURMUR_ADDR)")
	fs.StringVar(&c.Token, "token", os.Getenv("MURMUR_TOKEN"), "bearer token, needed by an agent with API tokens (env MURMUR_TOKEN)")
}

func (c *clientFlags) baseURL() string {
	a := strings.TrimRight(c.Addr, "/")
	if strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://") {
		return a
	}
	return "http://" + a
}

func (c *clientFlags) client() *http.Client { return &http.Client{Timeout: 60 * time.Second} }

func (c *clientFlags) checkOutput(allowed ...string) error {
	for _, a := range append([]string{"table", "json"}, allowed...) {
		if c.Output == a {
			return nil
		}
	}
	return usageError{fmt.Errorf("invalid --output %q: use %s", c.Output, strings.Join(append([]string{"table", "json"}, allowed...), ", "))}
}

// do sends a request to the agent and returns the body of a 2xx answer; any other
// answer becomes an error carrying the agent's message and field details.
func (c *clientFlags) do(method, path string, body []byte, contentType string) ([]byte, error) {
	req, err := http.NewRequest(method, c.baseURL()+path, bytes.NewReader(body))
	if err != nil {
		return nil, usageError{fmt.Errorf("invalid --addr %q: %w", c.Addr, err)}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (is an agent running there? see --addr)", method, c.baseURL()+path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return b, httpError(method, path, resp.StatusCode, b)
	}
	return b, nil
}

// httpError turns a non-2xx answer into an error carrying the agent's message and
// field details (the API's error envelope), or the raw body when it is not one. A 4xx
// is the caller's mistake: a usageError (exit 2).
func httpError(method, path string, status int, b []byte) error {
	var e struct {
		Error   string `json:"error"`
		Details []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"details"`
	}
	var err error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg := e.Error
		for _, d := range e.Details {
			msg += fmt.Sprintf("\n  %s: %s", d.Field, d.Message)
		}
		err = fmt.Errorf("%s (HTTP %d)", msg, status)
	} else {
		err = fmt.Errorf("%s %s: HTTP %d: %s", method, path, status, strings.TrimSpace(string(b)))
	}
	if status/100 == 4 {
		return usageError{err}
	}
	return err
}

func (c *clientFlags) getJSON(path string, v any) ([]byte, error) {
	b, err := c.do(http.MethodGet, path, nil, "")
	if err != nil {
		return nil, err
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("GET %s: the answer is not the JSON expected: %w", path, err)
		}
	}
	return b, nil
}

func printRawJSON(w io.Writer, b []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		_, err = w.Write(b)
		return err
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func newMembersCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "members",
		Short:   "List the fleet's members as one node sees them",
		Example: "  murmur members\n  murmur members --addr 127.0.0.1:7071 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.checkOutput(); err != nil {
				return err
			}
			var res struct {
				Members []struct {
					Name      string                        `json:"name"`
					Region    string                        `json:"region"`
					Addr      string                        `json:"addr"`
					Status    string                        `json:"status"`
					Load      struct{ CPU, Memory float64 } `json:"load"`
					Instances int                           `json:"instances"`
					Labels    map[string]string             `json:"labels"`
				} `json:"members"`
			}
			b, err := cf.getJSON("/v1/members", &res)
			if err != nil {
				return err
			}
			if cf.Output == "json" {
				return printRawJSON(cmd.OutOrStdout(), b)
			}
			tw := newTable(cmd.OutOrStdout(), "NAME", "REGION", "ADDR", "STATUS", "CPU", "MEMORY", "INSTANCES", "LABELS")
			for _, m := range res.Members {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f%%\t%.0f%%\t%d\t%s\n", m.Name, m.Region, m.Addr, m.Status,
					m.Load.CPU*100, m.Load.Memory*100, m.Instances, formatLabels(m.Labels))
			}
			return tw.Flush()
		},
	}
	cf.register(cmd.Flags())
	return cmd
}

func newStatusCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "Show one node's status",
		Example: "  murmur status\n  murmur status --addr 127.0.0.1:7071 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.checkOutput(); err != nil {
				return err
			}
			var st map[string]any
			b, err := cf.getJSON("/v1/status", &st)
			if err != nil {
				return err
			}
			if cf.Output == "json" {
				return printRawJSON(cmd.OutOrStdout(), b)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			keys := make([]string, 0, len(st))
			for k := range st {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				v, _ := json.Marshal(st[k])
				s := string(v)
				if str, ok := st[k].(string); ok {
					s = str
				}
				fmt.Fprintf(tw, "%s:\t%s\n", k, s)
			}
			return tw.Flush()
		},
	}
	cf.register(cmd.Flags())
	return cmd
}

func formatLabels(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func newKeygenCmd() *cobra.Command {
	var signing bool
	var out string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Make a gossip encryption key (or, with --signing, an intent signing key pair)",
		Example: `  # A 32-byte AES-256 gossip key for every agent's --encrypt
  murmur keygen

  # An ed25519 key pair: sign with --sign-key, trust with agents' --trust-key
  murmur keygen --signing --out ops`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if signing {
				return signingKeygen(cmd, out)
			}
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return fmt.Errorf("read random bytes: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), base64.StdEncoding.EncodeToString(key))
			return nil
		},
	}
	cmd.Flags().BoolVar(&signing, "signing", false, "make an ed25519 key pair for signing intents instead")
	cmd.Flags().StringVar(&out, "out", "murmur-signing", "with --signing: write OUT.key (private) and OUT.pub (public)")
	return cmd
}
