// Command murmur is the single binary of a murmur fleet: `murmur agent` runs a node,
// the other subcommands are clients of a node's HTTP API.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// usageError marks bad input from the user: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts a graceful stop; restore the default handling so a
	// second Ctrl-C ends the process at once.
	context.AfterFunc(ctx, stop)
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "murmur:", err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "murmur",
		Short: "A decentralized orchestrator for fleets of edge devices",
		Long: `murmur runs the same single binary on every device of a fleet. Nodes find each
other by gossip, elect a coordinator per region, and keep workloads running on
their own when the network is cut.

Start a node with 'murmur agent'; every other command talks to a node's HTTP API.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	cf := &clientFlags{}
	root.AddCommand(newAgentCmd(), newMembersCmd(cf), newStatusCmd(cf), newKeygenCmd(), newTLSCmd())
	root.AddCommand(extraCommands(cf)...)
	root.AddCommand(newAuditCmd(cf))
	root.AddCommand(newKeyringCmd(cf)) // keyring.go
	root.AddCommand(newEventsCmd(cf))  // events.go
	root.AddCommand(newLogsCmd(cf))    // logs.go
	root.AddCommand(newVersionCmd())   // version.go
	return root
}
