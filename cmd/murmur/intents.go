package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/murmur-edge/murmur/policy"
	"github.com/spf13/cobra"
)

// newIntentCommands returns the intent client commands: apply, delete, and get (with
// the subcommands intents and intent). If the root already has a get command, add
// newGetIntentCommands(cf) to it instead of this get.
func newIntentCommands(cf *clientFlags) []*cobra.Command {
	get := &cobra.Command{Use: "get", Short: "Show objects of the fleet", Args: cobra.NoArgs}
	get.AddCommand(newGetIntentCommands(cf)...)
	return []*cobra.Command{newApplyCmd(cf), newDeleteCmd(cf), get}
}

// newGetIntentCommands returns `get intents` and `get intent NAME`.
func newGetIntentCommands(cf *clientFlags) []*cobra.Command {
	list := &cobra.Command{
		Use:   "intents",
		Short: "List the intents stored on the node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.checkOutput(); err != nil {
				return err
			}
			deleted, _ := cmd.Flags().GetBool("deleted")
			return getIntents(cmd.Context(), cf, deleted, cmd.OutOrStdout())
		},
	}
	cf.register(list.Flags())
	list.Flags().Bool("deleted", false, "include tombstones (deleted intents kept for the TTL)")
	one := &cobra.Command{
		Use:   "intent NAME",
		Short: "Show one intent as the node stores it (-o yaml or -o json)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return getIntent(cmd.Context(), cf, args[0], cmd.OutOrStdout())
		},
	}
	cf.register(one.Flags(), "yaml")
	return []*cobra.Command{list, one}
}

func newApplyCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Push intents (Workloads, Policies) to the node; they spread to the whole fleet",
		Long: `Push intents to the node at --addr. Files hold YAML (documents separated by ---)
or JSON; a directory means its *.yaml, *.yml and *.json files; - reads stdin. The
intents are checked here first, then sent in one request: either all are stored or
none. Each is reported as created, updated or unchanged.

With --sign-key each intent is signed together with its version: above the version
the node holds for the name (read first), and this machine's clock when that is
higher. Nodes store a signed intent at exactly that version and refuse one that is
not above what they hold, so an older signed intent can never be replayed.`,
		Example: `  murmur apply -f vision.yaml
  murmur apply -f intents/ --wait
  murmur apply -f vision.yaml --sign-key ~/.murmur/signing.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.checkOutput(); err != nil {
				return err
			}
			files, _ := cmd.Flags().GetStringArray("filename")
			wait, _ := cmd.Flags().GetBool("wait")
			timeout, _ := cmd.Flags().GetDuration("timeout")
			signKey, _ := cmd.Flags().GetString("sign-key")
			if len(files) == 0 {
				return usageError{errors.New("apply needs -f FILE, -f DIR or -f -")}
			}
			if err := checkTimeout(timeout); err != nil {
				return err
			}
			return applyIntents(cmd.Context(), cf, applyOptions{files: files, wait: wait, timeout: timeout, signKey: signKey, now: time.Now(), stdin: cmd.InOrStdin()}, cmd.OutOrStdout())
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().StringArrayP("filename", "f", nil, "file, directory or - (stdin) with intents (repeatable)")
	cmd.Flags().Bool("wait", false, "answer only when every alive node has stored the intents (?wait=fleet)")
	cmd.Flags().Duration("timeout", 30*time.Second, "how long --wait waits")
	cmd.Flags().String("sign-key", "", "ed25519 private key file (from 'murmur keygen --signing') to sign the intents with")
	return cmd
}

func newDeleteCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an intent fleet-wide (a tombstone spreads like an update)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cf.checkOutput(); err != nil {
				return err
			}
			wait, _ := cmd.Flags().GetBool("wait")
			timeout, _ := cmd.Flags().GetDuration("timeout")
			signKey, _ := cmd.Flags().GetString("sign-key")
			if err := checkTimeout(timeout); err != nil {
				return err
			}
			return deleteIntent(cmd.Context(), cf, args[0], wait, timeout, signKey, time.Now(), cmd.OutOrStdout())
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().Bool("wait", false, "answer only when every alive node has stored the delete")
	cmd.Flags().Duration("timeout", 30*time.Second, "how long --wait waits")
	cmd.Flags().String("sign-key", "", "ed25519 private key file to sign the delete with, at a version above the one the node holds (needed when agents use --trust-key)")
	return cmd
}

// checkTimeout refuses a --timeout that is not a positive duration.
func checkTimeout(d time.Duration) error {
	if d <= 0 {
		return usageError{fmt.Errorf("invalid --timeout: %s: give a positive duration, e.g. 30s", d)}
	}
	return nil
}

type applyOptions struct {
	files   []string
	wait    bool
	timeout time.Duration
	signKey string
	now     time.Time // the signer's clock, for signed versions
	stdin   io.Reader
}

// readIntentFiles expands the -f arguments into (source name, bytes) pairs.
func readIntentFiles(args []string, stdin io.Reader) ([]string, [][]byte, error) {
	var names []string
	var bodies [][]byte
	for _, a := range args {
		if a == "-" {
			b, err := io.ReadAll(io.LimitReader(stdin, 16<<20))
			if err != nil {
				return nil, nil, fmt.Errorf("read stdin: %w", err)
			}
			names, bodies = append(names, "stdin"), append(bodies, b)
			continue
		}
		st, err := os.Stat(a)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("-f %s: %w", a, err)}
		}
		paths := []string{a}
		if st.IsDir() {
			paths = nil
			ents, err := os.ReadDir(a)
			if err != nil {
				return nil, nil, fmt.Errorf("read %s: %w", a, err)
			}
			for _, e := range ents {
				switch strings.ToLower(filepath.Ext(e.Name())) {
				case ".yaml", ".yml", ".json":
					if !e.IsDir() {
						paths = append(paths, filepath.Join(a, e.Name()))
					}
				}
			}
			sort.Strings(paths)
			if len(paths) == 0 {
				return nil, nil, usageError{fmt.Errorf("-f %s: no *.yaml, *.yml or *.json files in the directory", a)}
			}
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, nil, fmt.Errorf("read %s: %w", p, err)
			}
			names, bodies = append(names, p), append(bodies, b)
		}
	}
	return names, bodies, nil
}

// parseIntentFiles parses every source locally (errors name the file and the field).
func parseIntentFiles(names []string, bodies [][]byte) ([]policy.Intent, error) {
	var all []policy.Intent
	var problems []string
	seen := map[string]string{}
	for i, b := range bodies {
		ins, err := policy.Parse(b)
		if err != nil {
			var ps policy.Problems
			if errors.As(err, &ps) {
				for _, p := range ps {
					problems = append(problems, fmt.Sprintf("%s: %s", names[i], p))
				}
				continue
			}
			problems = append(problems, fmt.Sprintf("%s: %v", names[i], err))
			continue
		}
		for _, in := range ins {
			if other, dup := seen[in.Name()]; dup {
				problems = append(problems, fmt.Sprintf("%s: metadata.name: %q is also defined in %s", names[i], in.Name(), other))
				continue
			}
			seen[in.Name()] = names[i]
			all = append(all, in)
		}
	}
	if len(problems) > 0 {
		return nil, usageError{fmt.Errorf("invalid intents:\n  %s", strings.Join(problems, "\n  "))}
	}
	return all, nil
}

// encodeApplyBody returns the intents as one JSON array request.
func encodeApplyBody(ins []policy.Intent) ([]byte, error) {
	docs := make([]json.RawMessage, 0, len(ins))
	for i := range ins {
		d, err := policy.Document(&ins[i])
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	body, err := json.Marshal(docs)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return body, nil
}

// heldRecord is what the target node holds for a name, from GET /v1/intents?deleted=true.
type heldRecord struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Hash     string `json:"hash"`
	SignedBy string `json:"signedBy"`
	Deleted  bool   `json:"deleted"`
}

// heldVersions reads the version the node holds for every name, tombstones included.
func heldVersions(ctx context.Context, cf *clientFlags) (map[string]heldRecord, error) {
	resp, err := intentRequest(ctx, cf, http.MethodGet, "/v1/intents", url.Values{"deleted": {"true"}}, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("read the versions the node holds, to sign above them: %w", err)
	}
	var r struct {
		Intents []heldRecord `json:"intents"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		return nil, fmt.Errorf("decode GET /v1/intents: %w", err)
	}
	out := make(map[string]heldRecord, len(r.Intents))
	for _, x := range r.Intents {
		out[x.Name] = x
	}
	return out, nil
}

// signIntents signs each intent at the version it should have (signedVersionFor).
func signIntents(ins []policy.Intent, held map[string]heldRecord, priv ed25519.PrivateKey, now time.Time) error {
	keyID := policy.KeyID(priv.Public().(ed25519.PublicKey))
	for i := range ins {
		in := &ins[i]
		c, err := policy.Canonical(in)
		if err != nil {
			return err
		}
		h, ok := held[in.Name()]
		v, err := signedVersionFor(h, ok, policy.Hash(c), keyID, now)
		if err != nil {
			return err
		}
		if err := policy.SignIntent(in, v, priv); err != nil {
			return err
		}
	}
	return nil
}

// signedVersionFor picks the version to sign an intent with. When the node holds this
// very content signed by this key at a version the key chose, it is that version again:
// ed25519 signatures are deterministic, so the request holds exactly the stored record
// and the node answers "unchanged". Otherwise it is above the held version (live or
// deleted) and, when this machine's clock is not behind the fleet, its clock
// (policy.NextSignedVersion): nodes refuse a signed version that is not above the one
// they hold.
func signedVersionFor(h heldRecord, ok bool, hash, keyID string, now time.Time) (policy.Version, error) {
	var held policy.Version
	if ok {
		v, err := policy.ParseVersion(h.Version)
		if err != nil {
			return policy.Version{}, fmt.Errorf("the node holds %s at version %q: %w", h.Name, h.Version, err)
		}
		held = v
		if !h.Deleted && h.Hash == hash && h.SignedBy == keyID && held.Node == policy.SignerNode(keyID) {
			return held, nil
		}
	}
	return policy.NextSignedVersion(held, now, keyID), nil
}

func readSigningKey(path string) (ed25519.PrivateKey, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--sign-key: %w", err)}
	}
	k, err := policy.ParsePrivateKey(b)
	if err != nil {
		return nil, usageError{fmt.Errorf("--sign-key %s: %w", path, err)}
	}
	return k, nil
}

type intentResult struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Version string `json:"version"`
	Result  string `json:"result"`
}

func applyIntents(ctx context.Context, cf *clientFlags, o applyOptions, out io.Writer) error {
	priv, err := readSigningKey(o.signKey)
	if err != nil {
		return err
	}
	names, bodies, err := readIntentFiles(o.files, o.stdin)
	if err != nil {
		return err
	}
	ins, err := parseIntentFiles(names, bodies)
	if err != nil {
		return err
	}
	if priv != nil {
		// The signature covers the version: read what the node holds and sign above it.
		held, err := heldVersions(ctx, cf)
		if err != nil {
			return err
		}
		if err := signIntents(ins, held, priv, o.now); err != nil {
			return err
		}
	}
	body, err := encodeApplyBody(ins)
	if err != nil {
		return err
	}
	q := url.Values{}
	if o.wait {
		q.Set("wait", "fleet")
		q.Set("timeout", o.timeout.String())
	}
	resp, err := intentRequest(ctx, cf, http.MethodPost, "/v1/intents", q, body, nil)
	if err != nil {
		return err
	}
	return printResults(cf, resp, out)
}

func deleteIntent(ctx context.Context, cf *clientFlags, name string, wait bool, timeout time.Duration, signKey string, now time.Time, out io.Writer) error {
	priv, err := readSigningKey(signKey)
	if err != nil {
		return err
	}
	if !policy.ValidName(name) {
		return usageError{fmt.Errorf("%q is not an intent name (a DNS label)", name)}
	}
	hdr := http.Header{}
	if priv != nil {
		// The signature covers the version: sign the delete above the version the node
		// holds (a name it does not hold, or holds deleted, answers 404 here).
		resp, err := intentRequest(ctx, cf, http.MethodGet, "/v1/intents/"+name, nil, nil, nil)
		if err != nil {
			return err
		}
		var cur struct {
			Version string `json:"version"`
		}
		if err := json.Unmarshal(resp, &cur); err != nil {
			return fmt.Errorf("decode GET /v1/intents/%s: %w", name, err)
		}
		held, err := policy.ParseVersion(cur.Version)
		if err != nil {
			return fmt.Errorf("the node holds %s at version %q: %w", name, cur.Version, err)
		}
		v := policy.NextSignedVersion(held, now, policy.KeyID(priv.Public().(ed25519.PublicKey)))
		sig, err := policy.SignTombstone(name, v, priv)
		if err != nil {
			return err
		}
		hdr.Set("Murmur-Signature", sig.KeyID+":"+sig.Value+":"+sig.Version)
	}
	q := url.Values{}
	if wait {
		q.Set("wait", "fleet")
		q.Set("timeout", timeout.String())
	}
	resp, err := intentRequest(ctx, cf, http.MethodDelete, "/v1/intents/"+name, q, nil, hdr)
	if err != nil {
		return err
	}
	return printResults(cf, resp, out)
}

func printResults(cf *clientFlags, resp []byte, out io.Writer) error {
	if cf.Output == "json" {
		_, err := out.Write(resp)
		return err
	}
	var r struct {
		Intents []intentResult `json:"intents"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	for _, x := range r.Intents {
		fmt.Fprintf(out, "%s/%s %s (version %s)\n", strings.ToLower(x.Kind), x.Name, x.Result, x.Version)
	}
	return nil
}

func getIntents(ctx context.Context, cf *clientFlags, deleted bool, out io.Writer) error {
	q := url.Values{}
	if deleted {
		q.Set("deleted", "true")
	}
	resp, err := intentRequest(ctx, cf, http.MethodGet, "/v1/intents", q, nil, nil)
	if err != nil {
		return err
	}
	if cf.Output == "json" {
		_, err := out.Write(resp)
		return err
	}
	var r struct {
		Intents []struct {
			Name, Kind, Version, Hash, Origin, SignedBy string
			Deleted                                     bool
		} `json:"intents"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tVERSION\tORIGIN\tHASH\tSIGNED BY")
	for _, x := range r.Intents {
		kind := x.Kind
		if x.Deleted {
			kind += " (deleted)"
		}
		hash := x.Hash
		if len(hash) > 12 {
			hash = hash[:12]
		}
		signed := x.SignedBy
		if signed == "" {
			signed = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.Name, kind, x.Version, x.Origin, hash, signed)
	}
	return tw.Flush()
}

func getIntent(ctx context.Context, cf *clientFlags, name string, out io.Writer) error {
	q := url.Values{}
	switch cf.Output {
	case "", "yaml", "table":
		q.Set("format", "yaml")
	case "json":
	default:
		return usageError{fmt.Errorf("-o %s: get intent prints yaml or json", cf.Output)}
	}
	resp, err := intentRequest(ctx, cf, http.MethodGet, "/v1/intents/"+url.PathEscape(name), q, nil, nil)
	if err != nil {
		return err
	}
	_, err = out.Write(resp)
	return err
}

// intentRequest sends one request to the agent and returns the body of a 2xx answer;
// otherwise an error made of the envelope's error and details.
func intentRequest(ctx context.Context, cf *clientFlags, method, path string, q url.Values, body []byte, hdr http.Header) ([]byte, error) {
	u := strings.TrimSuffix(cf.baseURL(), "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cf.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cf.Token)
	}
	resp, err := cf.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (is an agent listening at %s?)", method, path, err, cf.baseURL())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	var env struct {
		Error   string `json:"error"`
		Details []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"details"`
	}
	if json.Unmarshal(b, &env) != nil || env.Error == "" {
		return nil, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	msg := env.Error
	for _, d := range env.Details {
		if d.Field != "" {
			msg += "\n  " + d.Field + ": " + d.Message
		} else {
			msg += "\n  " + d.Message
		}
	}
	err = fmt.Errorf("%s (HTTP %d)", msg, resp.StatusCode)
	if resp.StatusCode/100 == 4 {
		return nil, usageError{err}
	}
	return nil, err
}

// newSigningKeyPair implements `murmur keygen --signing --out OUT` (the keygen command
// calls it in place of the signingKeygen placeholder in extra.go): it writes a new ed25519
// key pair, the private key to OUT.key (PEM PKCS#8, mode 0600) and the public key to
// OUT.pub (PEM PKIX, for the agents' --trust-key). It refuses to overwrite either file.
func newSigningKeyPair(cmd *cobra.Command, out string) error {
	return writeSigningKeys(out, rand.Reader, cmd.OutOrStdout())
}

func writeSigningKeys(prefix string, random io.Reader, w io.Writer) error {
	if prefix == "" {
		prefix = "murmur-signing"
	}
	privPath, pubPath := prefix+".key", prefix+".pub"
	pub, priv, err := policy.GenerateSigningKey(random)
	if err != nil {
		return err
	}
	privPEM, err := policy.MarshalPrivateKey(priv)
	if err != nil {
		return err
	}
	pubPEM, err := policy.MarshalPublicKey(pub)
	if err != nil {
		return err
	}
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Stat(p); err == nil {
			return usageError{fmt.Errorf("%s exists; remove it or choose another --out", p)}
		}
	}
	if err := writeNew(privPath, privPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pubPEM, 0o644); err != nil {
		os.Remove(privPath)
		return err
	}
	fmt.Fprintf(w, "private key: %s (keep it secret; use with murmur apply --sign-key)\npublic key:  %s (give to agents with --trust-key)\nkey id:      %s\n", privPath, pubPath, policy.KeyID(pub))
	return nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
