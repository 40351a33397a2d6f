package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// getSubcommands are the `get` subcommands beyond intents.
func getSubcommands(cf *clientFlags) []*cobra.Command {
	regions := &cobra.Command{
		Use:     "regions",
		Short:   "List regions with their coordinator, voters and Raft position",
		Example: "  murmur get regions\n  murmur get regions -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.checkOutput(); err != nil {
				return err
			}
			var res struct {
				Regions []struct {
					Name        string    `json:"name"`
					Coordinator string    `json:"coordinator"`
					Voters      []string  `json:"voters"`
					Witnesses   []string  `json:"witnesses"`
					Nodes       int       `json:"nodes"`
					Term        uint64    `json:"term"`
					LastIndex   uint64    `json:"last_index"`
					Headless    bool      `json:"headless"`
					Since       time.Time `json:"headless_since"`
					Why         string    `json:"headless_reason"`
				} `json:"regions"`
			}
			b, err := cf.getJSON("/v1/regions", &res)
			if err != nil {
				return err
			}
			if cf.Output == "json" {
				return printRawJSON(cmd.OutOrStdout(), b)
			}
			tw := newTable(cmd.OutOrStdout(), "REGION", "COORDINATOR", "VOTERS", "WITNESSES", "NODES", "TERM", "LAST INDEX", "STATE")
			for _, r := range res.Regions {
				coord, state := r.Coordinator, "ok"
				if coord == "" {
					coord, state = "-", "electing"
				}
				if r.Headless {
					state = "HEADLESS"
					if !r.Since.IsZero() {
						state += " since " + r.Since.Local().Format("15:04:05")
					}
					if r.Why != "" {
						state += ": " + r.Why
					}
					state += " (see 'murmur operator recover --help')"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", r.Name, coord, orDash(strings.Join(r.Voters, ",")), orDash(strings.Join(r.Witnesses, ",")), r.Nodes, r.Term, r.LastIndex, state)
			}
			return tw.Flush()
		},
	}
	cf.register(regions.Flags())
	return []*cobra.Command{regions, newGetWorkloadsCmd(cf)}
}

// moreCommands are top-level commands of later subsystems.
func moreCommands(cf *clientFlags) []*cobra.Command {
	return []*cobra.Command{newOperatorCmd(), newExplainCmd(cf)}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
