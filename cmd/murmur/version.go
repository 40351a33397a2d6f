package main

import (
	"encoding/json"
	"fmt"

	"github.com/murmur-edge/murmur/agent"
	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	var asJSON bool
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print murmur's version, source commit and Go version",
		Long: `Print this binary's version, the commit it was built from and the Go version
that built it. 'make build' and 'make release' link the version (git describe) and
the commit in; a plain 'go build' in a git checkout takes them from Go's VCS stamp.
An agent reports its own version in 'murmur status' and 'murmur members'.`,
		Example: "  murmur version\n  murmur version --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "table", "text":
			case "json":
				asJSON = true
			default:
				return usageError{fmt.Errorf("invalid --output %q: use text or json", output)}
			}
			b := agent.BuildInfo()
			if asJSON {
				out, err := json.MarshalIndent(b, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", out)
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "murmur %s\ncommit: %s\ngo:     %s %s\n", b.Version, b.Commit, b.GoVersion, b.Platform)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"version","commit","go","platform"} as JSON`)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json (the same as --json)")
	return cmd
}
