package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
)

// auditEntry is one entry of GET /v1/audit as the CLI shows it.
type auditEntry struct {
	Time    time.Time `json:"time"`
	Token   string    `json:"token"`
	Remote  string    `json:"remote"`
	Method  string    `json:"method"`
	Path    string    `json:"path"`
	Intents []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"intents"`
	Status int    `json:"status"`
	Result string `json:"result"`
	Error  string `json:"error"`
}

func newAuditCmd(cf *clientFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the agent's audit log of write requests (needs an admin token)",
		Long: `Show the newest entries of one agent's audit log, oldest first: every write request
it received, refused ones included, with the token id, the client address, the
intents it touched and the answer. Each agent keeps its own log in <data-dir>/audit.log.`,
		Example: "  murmur audit\n  murmur audit --limit 1000 -o json --addr 10.0.0.11:7070 --token \"$(cat ops.token)\"",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.checkOutput(); err != nil {
				return err
			}
			if limit < 1 || limit > 1000 {
				return usageError{fmt.Errorf("invalid --limit %d: give a number from 1 to 1000", limit)}
			}
			var res struct {
				Entries []auditEntry `json:"entries"`
				Skipped int          `json:"skipped"`
			}
			b, err := cf.getJSON("/v1/audit?"+url.Values{"limit": {strconv.Itoa(limit)}}.Encode(), &res)
			if err != nil {
				return err
			}
			if cf.Output == "json" {
				return printRawJSON(cmd.OutOrStdout(), b)
			}
			if res.Skipped > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "murmur: %d line(s) of the audit log could not be read (torn by a crash?)\n", res.Skipped)
			}
			return printAudit(cmd.OutOrStdout(), res.Entries)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "how many of the newest entries to show (1-1000)")
	cf.register(cmd.Flags())
	return cmd
}

func printAudit(w io.Writer, entries []auditEntry) error {
	tw := newTable(w, "TIME", "TOKEN", "REMOTE", "METHOD", "PATH", "INTENT", "RESULT")
	for _, e := range entries {
		intents := make([]string, len(e.Intents))
		for i, in := range e.Intents {
			intents[i] = in.Name
			if in.Version != "" {
				intents[i] += "@" + in.Version
			}
		}
		result := fmt.Sprintf("%d %s", e.Status, e.Result)
		if e.Error != "" {
			result += ": " + e.Error
		}
		fields := []string{e.Time.UTC().Format(time.RFC3339), orDash(e.Token), e.Remote, e.Method, e.Path, orDash(strings.Join(intents, ",")), result}
		for i, f := range fields {
			fields[i] = printable(f)
		}
		fmt.Fprintln(tw, strings.Join(fields, "\t"))
	}
	return tw.Flush()
}

// printable escapes what is not printable (tabs, newlines, terminal escapes): paths
// and error messages in the audit come from clients.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}
