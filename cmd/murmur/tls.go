package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/murmur-edge/murmur/agent/secure"
	"github.com/murmur-edge/murmur/runtime"
)

// newTLSCmd is `murmur tls ca create` and `murmur tls cert create`, in the style of
// `consul tls`: files a small fleet needs for mutual TLS between its agents.
func newTLSCmd() *cobra.Command {
	tlsCmd := &cobra.Command{
		Use:   "tls",
		Short: "Make the CA and node certificates agents authenticate each other with",
		Long: `Every agent-to-agent connection (Raft, gossip streams) is mutual TLS 1.3 when agents
run with --tls-ca, --tls-cert and --tls-key. A node's certificate names the node and
its region; a Raft port accepts only certificates of its own region's members.

Keep ca-key.pem off the devices: it signs certificates for any node.`,
		Args: cobra.NoArgs,
	}
	ca := &cobra.Command{Use: "ca", Short: "Fleet certificate authority", Args: cobra.NoArgs}
	caCreate := &cobra.Command{
		Use:     "create --out DIR",
		Short:   "Create a fleet CA: DIR/ca.pem (certificate) and DIR/ca-key.pem (private key, mode 0600)",
		Example: `  murmur tls ca create --out /etc/murmur/tls`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, _ := cmd.Flags().GetString("out")
			days, _ := cmd.Flags().GetInt("days")
			force, _ := cmd.Flags().GetBool("force")
			return createCA(out, days, force, rand.Reader, time.Now(), cmd.OutOrStdout())
		},
	}
	caCreate.Flags().String("out", ".", "directory to write ca.pem and ca-key.pem to")
	caCreate.Flags().Int("days", 3650, "validity in days")
	caCreate.Flags().Bool("force", false, "overwrite existing files")
	ca.AddCommand(caCreate)

	cert := &cobra.Command{Use: "cert", Short: "Node certificates", Args: cobra.NoArgs}
	certCreate := &cobra.Command{
		Use:   "create --ca DIR --node NAME --region R --out DIR",
		Short: "Create a certificate for a node: DIR/NAME.pem and DIR/NAME-key.pem (mode 0600)",
		Example: `  murmur tls cert create --ca /etc/murmur/tls --node gw-1 --region factory-1 --out /etc/murmur/tls
  murmur agent --name gw-1 --region factory-1 --tls-ca /etc/murmur/tls/ca.pem \
    --tls-cert /etc/murmur/tls/gw-1.pem --tls-key /etc/murmur/tls/gw-1-key.pem ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			get := func(n string) string { v, _ := cmd.Flags().GetString(n); return v }
			days, _ := cmd.Flags().GetInt("days")
			force, _ := cmd.Flags().GetBool("force")
			return createNodeCert(get("ca"), get("out"), secure.Identity{Node: get("node"), Region: get("region")}, days, force, rand.Reader, time.Now(), cmd.OutOrStdout())
		},
	}
	certCreate.Flags().String("ca", ".", "directory holding ca.pem and ca-key.pem")
	certCreate.Flags().String("node", "", "the node's name (its --name)")
	certCreate.Flags().String("region", "", "the node's region (its --region)")
	certCreate.Flags().String("out", ".", "directory to write NAME.pem and NAME-key.pem to")
	certCreate.Flags().Int("days", 365, "validity in days (at most the CA's)")
	certCreate.Flags().Bool("force", false, "overwrite existing files")
	cert.AddCommand(certCreate)
	tlsCmd.AddCommand(ca, cert)
	return tlsCmd
}

func createCA(out string, days int, force bool, random io.Reader, now time.Time, w io.Writer) error {
	if days <= 0 {
		return usageError{fmt.Errorf("--days %d: give a positive number of days", days)}
	}
	certFile, keyFile := filepath.Join(out, "ca.pem"), filepath.Join(out, "ca-key.pem")
	if err := checkWritable(out, force, certFile, keyFile); err != nil {
		return err
	}
	c, k, err := secure.NewCA(random, now, time.Duration(days)*24*time.Hour)
	if err != nil {
		return err
	}
	if err := writePair(certFile, c, keyFile, k); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s and %s (keep the key off the devices)\n", certFile, keyFile)
	return nil
}

func createNodeCert(caDir, out string, id secure.Identity, days int, force bool, random io.Reader, now time.Time, w io.Writer) error {
	if id.Node == "" || id.Region == "" {
		return usageError{errors.New("give --node NAME and --region R: the agent's --name and --region")}
	}
	if err := id.Validate(); err != nil {
		return usageError{fmt.Errorf("--node/--region: %w", err)}
	}
	if days <= 0 {
		return usageError{fmt.Errorf("--days %d: give a positive number of days", days)}
	}
	caCert, err := os.ReadFile(filepath.Join(caDir, "ca.pem"))
	if err != nil {
		return usageError{fmt.Errorf("--ca %s: %w (make a CA with 'murmur tls ca create --out %s')", caDir, err, caDir)}
	}
	caKey, err := os.ReadFile(filepath.Join(caDir, "ca-key.pem"))
	if err != nil {
		return usageError{fmt.Errorf("--ca %s: %w", caDir, err)}
	}
	certFile, keyFile := filepath.Join(out, id.Node+".pem"), filepath.Join(out, id.Node+"-key.pem")
	if err := checkWritable(out, force, certFile, keyFile); err != nil {
		return err
	}
	c, k, err := secure.NewNodeCert(random, caCert, caKey, id, now, time.Duration(days)*24*time.Hour)
	if err != nil {
		return usageError{fmt.Errorf("--ca %s: %w", caDir, err)}
	}
	if err := writePair(certFile, c, keyFile, k); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s and %s for node %s of region %s\n", certFile, keyFile, id.Node, id.Region)
	return nil
}

func checkWritable(dir string, force bool, files ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out %s: %w", dir, err)
	}
	if force {
		return nil
	}
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			return usageError{fmt.Errorf("%s exists: remove it or give --force", f)}
		}
	}
	return nil
}

// writePair writes the key first (0600), then the certificate (0644), each atomically.
func writePair(certFile string, cert []byte, keyFile string, key []byte) error {
	if err := runtime.WriteFileAtomic(keyFile, key, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", keyFile, err)
	}
	if err := runtime.WriteFileAtomic(certFile, cert, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", certFile, err)
	}
	return nil
}
