package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/murmur-edge/murmur/agent/region"
	"github.com/spf13/cobra"
)

// Explanation is one line of `murmur explain`: why an instance is on its node, or why
// some of an intent's instances are not placed anywhere.
type Explanation struct {
	Region   string `json:"region"`
	Intent   string `json:"intent"`
	Instance string `json:"instance,omitempty"` // empty for unplaced work
	Node     string `json:"node,omitempty"`
	State    string `json:"state,omitempty"`
	Cause    string `json:"cause,omitempty"`
	Unplaced int    `json:"unplaced,omitempty"` // instances not placed (Instance empty)
	Reason   string `json:"reason"`
}

func newExplainCmd(cf *clientFlags) *cobra.Command {
	var regionName string
	cmd := &cobra.Command{
		Use:   "explain INTENT",
		Short: "Say why each instance of a Workload intent is on its node, and why any is not placed",
		Long: `Explain a Workload intent: one line per instance saying why it runs on its node (the
decision that placed it, committed with it in the region's Raft log: the rule that
fired, the scheduler's score and how many nodes it beat), and one line per region where
instances are missing, with the scheduler's reason (the filters that rejected nodes,
or the policy that forbids the workload). Every region the intent targets is asked,
through its coordinator, unless --region names one.`,
		Example: `  murmur explain vision
  murmur explain vision --region site-b -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cf.checkOutput(); err != nil {
				return err
			}
			intent := args[0]
			regions := []string{regionName}
			if regionName == "" {
				var rs struct {
					Regions []region.RegionSummary `json:"regions"`
				}
				if _, err := cf.getJSON("/v1/regions", &rs); err != nil {
					return err
				}
				regions = regions[:0]
				for _, r := range rs.Regions {
					regions = append(regions, r.Name)
				}
			}
			var out []Explanation
			found := false
			var failed []string
			for _, r := range regions {
				var v workloadsView
				q := url.Values{"region": {r}, "intent": {intent}}
				if _, err := cf.getJSON("/v1/workloads?"+q.Encode(), &v); err != nil {
					if regionName != "" {
						return err
					}
					failed = append(failed, fmt.Sprintf("region %s: %v", r, err))
					continue
				}
				ex, ok := explain(v, intent)
				found = found || ok
				out = append(out, ex...)
			}
			for _, f := range failed {
				fmt.Fprintln(cmd.ErrOrStderr(), "murmur explain: could not ask", f)
			}
			if !found {
				where := "any region"
				if regionName != "" {
					where = "region " + regionName
				}
				if len(failed) > 0 {
					return fmt.Errorf("intent %q: no answer from %s that knows it (%d regions could not be asked)", intent, where, len(failed))
				}
				return fmt.Errorf("intent %q is not a Workload placed or pending in %s: check the name with `murmur get intents`", intent, where)
			}
			if cf.Output == "json" {
				if out == nil {
					out = []Explanation{}
				}
				b, err := json.MarshalIndent(map[string]any{"explanations": out}, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return err
			}
			return writeExplanations(cmd.OutOrStdout(), out)
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().StringVar(&regionName, "region", "", "explain only this region (default: every region)")
	return cmd
}

// explain turns one region's view of an intent into explanations; ok is false when
// the region does not know the intent at all (it does not target the region).
func explain(v workloadsView, intent string) (out []Explanation, ok bool) {
	for _, w := range v.Workloads {
		if w.Intent != intent {
			continue
		}
		ok = true
		out = append(out, Explanation{Region: v.Region, Intent: intent, Instance: w.Instance, Node: w.Node, State: w.State, Cause: w.Cause, Reason: w.Reason})
	}
	for _, s := range v.Intents {
		if s.Intent != intent {
			continue
		}
		ok = true
		if s.Unplaced > 0 || s.Reason != "" {
			out = append(out, Explanation{Region: v.Region, Intent: intent, Unplaced: s.Unplaced, Reason: orDash(s.Reason)})
		}
	}
	return out, ok
}

// causeWords says in words what kind of decision a cause is.
func causeWords(c string) string {
	switch c {
	case "missing":
		return "placed"
	case "replace":
		return "placed to replace a lost instance"
	case "global":
		return "placed (one per eligible node)"
	case "update":
		return "moved to the new version"
	case "drain":
		return "moved off a draining node"
	case "failing":
		return "moved after repeated failures"
	case "offload":
		return "offloaded from a hot node"
	case "ineligible":
		return "moved off a node that no longer fits"
	case "":
		return "placed"
	}
	return c
}

// writeExplanations prints one readable line per explanation.
func writeExplanations(w io.Writer, ex []Explanation) error {
	var b strings.Builder
	for _, e := range ex {
		if e.Instance == "" {
			if e.Unplaced > 0 {
				fmt.Fprintf(&b, "%s  [%s] %d not placed: %s\n", e.Intent, e.Region, e.Unplaced, e.Reason)
			} else {
				fmt.Fprintf(&b, "%s  [%s] note: %s\n", e.Intent, e.Region, e.Reason)
			}
			continue
		}
		if e.Reason == "" {
			fmt.Fprintf(&b, "%s  on %s [%s] (%s): %s (no reason recorded: placed by an earlier murmur version)\n", e.Instance, orDash(e.Node), e.Region, orDash(e.State), causeWords(e.Cause))
			continue
		}
		fmt.Fprintf(&b, "%s  on %s [%s] (%s): %s because %s\n", e.Instance, orDash(e.Node), e.Region, orDash(e.State), causeWords(e.Cause), e.Reason)
	}
	if b.Len() == 0 {
		b.WriteString("nothing to explain: the intent has no instances and nothing is pending\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
