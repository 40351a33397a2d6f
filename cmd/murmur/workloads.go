package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/murmur-edge/murmur/agent/coordinator"
	"github.com/spf13/cobra"
)

// workloadsView is the answer of GET /v1/workloads: one region's instances as its
// coordinator sees them, and desired against running per Workload intent.
type workloadsView = coordinator.View

func newGetWorkloadsCmd(cf *clientFlags) *cobra.Command {
	var region, intent string
	cmd := &cobra.Command{
		Use:   "workloads",
		Short: "Show a region's workloads: desired against running per intent, or (-o wide) every instance and its node",
		Long: `Show the workloads of one region as its coordinator sees them: by default one row
per Workload intent (desired, running and placed instances, and why some could not be
placed); with -o wide one row per instance with the node that runs it, its state,
restarts and age. The region is the node's own unless --region names another one,
which is then asked through its coordinator.`,
		Example: `  murmur get workloads
  murmur get workloads -o wide --region site-b
  murmur get workloads --intent camera-feed -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.checkOutput("wide"); err != nil {
				return err
			}
			q := url.Values{}
			if region != "" {
				q.Set("region", region)
			}
			if intent != "" {
				q.Set("intent", intent)
			}
			path := "/v1/workloads"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var v workloadsView
			b, err := cf.getJSON(path, &v)
			if err != nil {
				return err
			}
			switch cf.Output {
			case "json":
				return printRawJSON(cmd.OutOrStdout(), b)
			case "wide":
				return writeWorkloadInstances(cmd.OutOrStdout(), v, time.Now())
			default:
				return writeWorkloadSummary(cmd.OutOrStdout(), v)
			}
		},
	}
	cf.register(cmd.Flags(), "wide")
	cmd.Flags().StringVar(&region, "region", "", "show this region (default: the region of the node at --addr)")
	cmd.Flags().StringVar(&intent, "intent", "", "show only this Workload intent")
	return cmd
}

// writeWorkloadSummary prints one row per intent: desired against running.
func writeWorkloadSummary(w io.Writer, v workloadsView) error {
	tw := newTable(w, "INTENT", "DESIRED", "RUNNING", "PLACED", "UNPLACED", "REASON")
	for _, s := range v.Intents {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", s.Intent, s.Desired, s.Running, s.Placed, s.Unplaced, orDash(s.Reason))
	}
	return tw.Flush()
}

// writeWorkloadInstances prints one row per instance; AGE is now - since.
func writeWorkloadInstances(w io.Writer, v workloadsView, now time.Time) error {
	tw := newTable(w, "INTENT", "INSTANCE", "NODE", "STATE", "RESTARTS", "AGE", "GENERATION", "WHY")
	for _, x := range v.Workloads {
		why := x.Cause
		if x.Reason != "" {
			why += ": " + x.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", x.Intent, x.Instance, orDash(x.Node), orDash(x.State), x.Restarts, age(now, x.Since), x.Generation, orDash(why))
	}
	for _, s := range v.Intents {
		if s.Unplaced > 0 {
			fmt.Fprintf(tw, "%s\t-\t-\tunplaced\t-\t-\t-\t%d not placed: %s\n", s.Intent, s.Unplaced, orDash(s.Reason))
		}
	}
	return tw.Flush()
}

// age formats now - since like kubectl: the two largest units ("45s", "3m12s",
// "2h5m", "3d4h"); "-" when since is unknown.
func age(now, since time.Time) string {
	if since.IsZero() {
		return "-"
	}
	d := max(now.Sub(since), 0)
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
	}
}
