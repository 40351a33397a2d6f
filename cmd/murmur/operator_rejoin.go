package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/murmur-edge/murmur/agent/region"
)

// nodeIDFile is where the agent keeps this node's id (agent/identity.go); without it
// the agent mints a new id at its next start.
const nodeIDFile = "node-id"

// newOperatorRejoinCmd is `murmur operator rejoin`: the way back from a damaged Raft
// log (the agent refuses to start on one and names this command).
func newOperatorRejoinCmd() *cobra.Command {
	var dataDir, regionName string
	cmd := &cobra.Command{
		Use:   "rejoin --data-dir DIR --region R",
		Short: "Set a damaged Raft log aside so this node rejoins its region as a new member",
		Long: `Moves this node's Raft state (<data-dir>/raft) aside to <data-dir>/raft.damaged-TIME
(kept for inspection) and removes its node id (<data-dir>/node-id). Run it with the
agent stopped, after the agent refused to start on a damaged Raft log. At its next
start the node has a new id and an empty log: the region's coordinator removes the
old id and adds the new one, which catches up from the others. The rest of the data
dir (intents, this node's assignments) is kept. A region whose only voter was this
node starts a new group, whose coordinator plans the region again from the intents.
See docs/regions.md, "Damage to the Raft log".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOperatorRejoin(cmd.OutOrStdout(), dataDir, regionName, time.Now())
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the agent's --data-dir on this node (required)")
	cmd.Flags().StringVar(&regionName, "region", "", "the node's --region (required; checked against the data dir)")
	return cmd
}

func runOperatorRejoin(stdout io.Writer, dataDir, regionName string, now time.Time) error {
	if dataDir == "" {
		return usageError{errors.New("--data-dir is required: the agent's data dir on this node")}
	}
	if regionName == "" {
		return usageError{errors.New("--region is required: the region of this node")}
	}
	moved, err := region.SetAside(dataDir, regionName, now)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "raft state set aside in %s\n", moved)
	if err := os.Remove(filepath.Join(dataDir, nodeIDFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the node id: %w", err)
	}
	fmt.Fprintf(stdout, "node id removed: start the agent, it joins region %s as a new member\n", regionName)
	return nil
}
