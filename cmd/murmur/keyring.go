package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// keyringAnswer is the part of agent.KeyringJSON the CLI reads.
type keyringAnswer struct {
	Error string `json:"error"`
	Op    string `json:"op"`
	Keys  []struct {
		Key     string `json:"key"`
		Nodes   int    `json:"nodes"`
		Primary int    `json:"primary"`
	} `json:"keys"`
	Nodes    int               `json:"nodes"`
	Answered int               `json:"answered"`
	Failed   int               `json:"failed"`
	NoAnswer []string          `json:"no_answer"`
	Errors   map[string]string `json:"errors"`
	Down     []string          `json:"down"`
}

func newKeyringCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keyring",
		Short: "List and rotate the fleet's gossip encryption keys",
		Long: `Every operation goes to one agent, which applies it and passes it to every
live member; the answer counts the nodes that hold each key. Rotate a key without
downtime in three steps, each once every node has answered:

  murmur keyring install NEW   # every node decrypts with NEW too
  murmur keyring use NEW       # every node encrypts with NEW
  murmur keyring remove OLD    # OLD is gone

The command exits 1 when the operation failed on a node or a node did not answer
(the table shows where things stand), and 2 when the agent refused it (use of a key
some node lacks, remove of a key some node still encrypts with, no encryption).
See docs/security.md, "Gossip key rotation".`,
		Example: `  murmur keyring list
  murmur keyring install "$(murmur keygen)"
  murmur keyring use NEWKEY --addr 10.0.0.7:7070 --token "$ADMIN_TOKEN"
  murmur keyring remove OLDKEY -o json`,
		Args: cobra.NoArgs,
	}
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the keys of every live node, with how many nodes hold and use each",
		Example: "  murmur keyring list\n  murmur keyring list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return keyringOp(cmd, cf, "list", "")
		},
	}
	cmds := []*cobra.Command{list}
	for _, op := range []struct{ name, short string }{
		{"install", "Add KEY to every node's keyring: nodes decrypt with it, still encrypt with the primary key"},
		{"use", "Make KEY the primary key of every node (refused while a node lacks it)"},
		{"remove", "Remove KEY from every node's keyring (refused while a node still uses it as its primary)"},
	} {
		cmds = append(cmds, &cobra.Command{
			Use:     op.name + " KEY",
			Short:   op.short,
			Example: "  murmur keyring " + op.name + " 8kq1...base64...=",
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return keyringOp(cmd, cf, op.name, args[0])
			},
		})
	}
	for _, c := range cmds {
		cf.register(c.Flags())
		c.Flags().Duration("timeout", 5*time.Second, "how long the agent waits for the nodes' answers (per round)")
	}
	cmd.AddCommand(cmds...)
	return cmd
}

// keyringOp runs one keyring operation against the agent and prints the outcome.
func keyringOp(cmd *cobra.Command, cf *clientFlags, op, key string) error {
	if err := cf.checkOutput(); err != nil {
		return err
	}
	timeout, _ := cmd.Flags().GetDuration("timeout")
	if err := checkTimeout(timeout); err != nil {
		return err
	}
	q := url.Values{"timeout": {timeout.String()}}
	var b []byte
	var err error
	if op == "list" {
		b, err = cf.do(http.MethodGet, "/v1/keyring?"+q.Encode(), nil, "")
	} else {
		key = strings.TrimSpace(key)
		if err := checkGossipKey(key); err != nil {
			return usageError{fmt.Errorf("invalid KEY: %w", err)}
		}
		body, _ := json.Marshal(map[string]string{"key": key})
		b, err = cf.do(http.MethodPost, "/v1/keyring/"+op+"?"+q.Encode(), body, "application/json")
	}
	var ans keyringAnswer
	if len(b) == 0 || json.Unmarshal(b, &ans) != nil || ans.Op == "" {
		if err != nil {
			return err
		}
		return fmt.Errorf("keyring %s: the answer is not the JSON expected: %s", op, strings.TrimSpace(string(b)))
	}
	if cf.Output == "json" {
		if perr := printRawJSON(cmd.OutOrStdout(), b); perr != nil && err == nil {
			return perr
		}
		return err
	}
	printKeyring(cmd.OutOrStdout(), op, ans)
	return err
}

// checkGossipKey checks a base64 gossip key before it is sent.
func checkGossipKey(s string) error {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("not base64: %v (make a key with 'murmur keygen')", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("%d bytes: a gossip key is 16, 24 or 32 bytes (make one with 'murmur keygen')", len(k))
}

// printKeyring writes the key table and what failed where. A failed operation's
// nodes are named by the error main prints (the agent's details), not here.
func printKeyring(w io.Writer, op string, a keyringAnswer) {
	if op != "list" && a.Error == "" {
		done := map[string]string{"install": "installed the key on", "use": "switched to the key on", "remove": "removed the key from"}[op]
		fmt.Fprintf(w, "%s %d of %d nodes\n", done, a.Answered, a.Nodes)
	}
	tw := newTable(w, "KEY", "NODES", "PRIMARY")
	for _, k := range a.Keys {
		fmt.Fprintf(tw, "%s\t%d/%d\t%d/%d\n", k.Key, k.Nodes, a.Answered, k.Primary, a.Answered)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d of %d nodes answered", a.Answered, a.Nodes)
	if a.Failed > 0 {
		fmt.Fprintf(w, ", %d failed or did not answer", a.Failed)
	}
	fmt.Fprintln(w)
	if a.Error == "" {
		for _, n := range a.NoAnswer {
			fmt.Fprintf(w, "  %s: did not answer\n", n)
		}
		nodes := make([]string, 0, len(a.Errors))
		for n := range a.Errors {
			nodes = append(nodes, n)
		}
		slices.Sort(nodes)
		for _, n := range nodes {
			fmt.Fprintf(w, "  %s: %s\n", n, a.Errors[n])
		}
	}
	if len(a.Down) > 0 {
		fmt.Fprintf(w, "not asked (dead or left): %s; once the old key is removed they need the new keyring by hand (docs/security.md)\n", strings.Join(a.Down, ", "))
	}
}
