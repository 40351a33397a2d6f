package main

import (
	"github.com/spf13/cobra"
)

// extraCommands are the client commands of the subsystems: intents, regions, workloads.
func extraCommands(cf *clientFlags) []*cobra.Command {
	get := &cobra.Command{
		Use:   "get",
		Short: "Show objects of the fleet: intents, intent NAME, regions, workloads",
		Example: `  murmur get intents
  murmur get intent vision -o yaml
  murmur get regions
  murmur get workloads -o wide`,
		Args: cobra.NoArgs,
	}
	get.AddCommand(newGetIntentCommands(cf)...)
	get.AddCommand(getSubcommands(cf)...)
	return append([]*cobra.Command{newApplyCmd(cf), newDeleteCmd(cf), get}, moreCommands(cf)...)
}

func signingKeygen(cmd *cobra.Command, out string) error { return newSigningKeyPair(cmd, out) }
