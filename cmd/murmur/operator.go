package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/hashicorp/raft"
	"github.com/spf13/cobra"

	"github.com/murmur-edge/murmur/agent/region"
)

// newOperatorCmd is `murmur operator`: offline maintenance of this node's data dir,
// run while the agent on this node is stopped.
func newOperatorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Offline maintenance of this node's region Raft state (agent stopped)",
	}
	cmd.AddCommand(newOperatorRecoverCmd(), newOperatorRejoinCmd())
	return cmd
}

func newOperatorRecoverCmd() *cobra.Command {
	var dataDir, regionName string
	var peers []string
	cmd := &cobra.Command{
		Use:   "recover --data-dir DIR --region R --peer ID=HOST:PORT [--peer ...]",
		Short: "Bring a headless region back from its surviving voters (loss of quorum)",
		Long: `Rewrites the region's Raft configuration in --data-dir so that the --peer nodes are
its only voters. Use it when a majority of a region's voters is gone for good and the
region reports headless. Stop the agent on every survivor, run this on each survivor
with the same --peer list, then start the agents again: the survivors elect a
coordinator and autopilot restores the voter count. Every entry in the local log is
taken as committed. Without --peer, prints the configuration stored in --data-dir.
See docs/regions.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOperatorRecover(cmd.OutOrStdout(), cmd.ErrOrStderr(), dataDir, regionName, peers)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the agent's --data-dir on this node (required)")
	cmd.Flags().StringVar(&regionName, "region", "", "the node's --region (required; checked against the data dir)")
	cmd.Flags().StringArrayVar(&peers, "peer", nil, "a surviving voter as ID=HOST:PORT (its node id and raft address); repeat for each survivor")
	return cmd
}

func parseRecoverPeers(peers []string) ([]raft.Server, error) {
	var out []raft.Server
	for _, p := range peers {
		id, addr, ok := strings.Cut(p, "=")
		id, addr = strings.TrimSpace(id), strings.TrimSpace(addr)
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peer %q: want ID=HOST:PORT (node id, raft address), e.g. --peer 3f9c1a=10.0.0.5:7947", p)
		}
		out = append(out, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
	}
	return out, nil
}

func runOperatorRecover(stdout, stderr io.Writer, dataDir, regionName string, peers []string) error {
	if dataDir == "" {
		return fmt.Errorf("--data-dir is required: the agent's data dir on this node")
	}
	if regionName == "" {
		return fmt.Errorf("--region is required: the region of this node")
	}
	if _, err := os.Stat(dataDir); err != nil {
		return fmt.Errorf("--data-dir %s: %w", dataDir, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	servers, err := parseRecoverPeers(peers)
	if err != nil {
		return err
	}
	before, err := region.LastConfiguration(dataDir, regionName, log)
	if err != nil {
		return fmt.Errorf("read the stored configuration: %w", err)
	}
	fmt.Fprintln(stdout, "stored configuration:")
	for _, s := range before {
		fmt.Fprintf(stdout, "  %s %s %s\n", s.ID, s.Address, strings.ToLower(s.Suffrage.String()))
	}
	if len(servers) == 0 {
		return fmt.Errorf("no --peer given: name every surviving voter as --peer ID=HOST:PORT (ids above)")
	}
	if err := region.Recover(dataDir, regionName, servers, log); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "recovered: voters are now")
	for _, s := range servers {
		fmt.Fprintf(stdout, "  %s %s\n", s.ID, s.Address)
	}
	fmt.Fprintln(stdout, "start the agent on every survivor; autopilot restores the voter count")
	return nil
}
