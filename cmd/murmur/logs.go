package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/murmur-edge/murmur/agent/logs"
	"github.com/murmur-edge/murmur/policy"
	"github.com/spf13/cobra"
)

func newLogsCmd(cf *clientFlags) *cobra.Command {
	var follow bool
	var stream, tail, maxBytes string
	cmd := &cobra.Command{
		Use:   "logs INSTANCE",
		Short: "Print an instance's stdout and stderr, from whichever node runs it",
		Long: `Print what an instance wrote to stdout (on stdout) and stderr (on stderr). Any
agent answers: it finds the node that runs the instance in the regions' workloads
and fetches the output from it over the fleet's authenticated channel.

Without -f, at most --max-bytes of each stream's newest output are printed
(default 1Mi, at most 16Mi); --tail keeps the last N lines of that. With -f the
command then prints new output as it comes, until Ctrl-C or until the instance's
run ends (a crash, a stop, a move to another node). Exec instances keep their
output in files of up to 10 MiB per stream; docker instances in the engine's log
of their current container.

The agent needs a token of role write (output may hold secrets): --token or
MURMUR_TOKEN. Instance ids: 'murmur get workloads -o wide'.`,
		Example: `  murmur logs vision-4-0
  murmur logs vision-4-0 -f --tail 20
  murmur logs vision-4-0 --stream stderr --addr 10.0.0.12:7070 --token "$TOKEN"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("give one instance id, e.g. 'murmur logs vision-4-0' ('murmur get workloads -o wide' lists them)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			switch stream {
			case "stdout", "stderr", "both":
				q.Set("stream", stream)
			default:
				return usageError{fmt.Errorf("invalid --stream %q: use stdout, stderr or both", stream)}
			}
			if tail != "all" {
				n, err := strconv.Atoi(tail)
				if err != nil || n < 0 || n > logs.MaxTail {
					return usageError{fmt.Errorf("invalid --tail %q: use a number of lines from 0 to %d, or all", tail, logs.MaxTail)}
				}
				q.Set("tail", tail)
			}
			n, err := policy.ParseMemory(maxBytes)
			if err != nil || n < 1 || n > logs.MaxBacklogBytes {
				return usageError{fmt.Errorf("invalid --max-bytes %q: use 1 to 16Mi, e.g. 256Ki or 4Mi", maxBytes)}
			}
			q.Set("max_bytes", strconv.FormatInt(n, 10))
			if follow {
				q.Set("follow", "1")
			}
			path := "/v1/instances/" + url.PathEscape(args[0]) + "/logs?" + q.Encode()
			return printLogs(cmd.Context(), cf, path, follow, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new output until Ctrl-C or the end of the instance's run")
	f.StringVar(&stream, "stream", "both", "stdout, stderr or both")
	f.StringVar(&tail, "tail", "all", "print only the last N lines of each stream's output (exec; docker: of both together), or all")
	f.StringVar(&maxBytes, "max-bytes", "1Mi", "print at most this much of each stream's newest output (up to 16Mi)")
	cf.registerConn(f)
	return cmd
}

// printLogs streams a logs answer: stdout frames to out, stderr frames to errOut; an
// error frame ends it with that error. Ctrl-C (ctx) ends it cleanly.
func printLogs(ctx context.Context, cf *clientFlags, path string, follow bool, out, errOut io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cf.baseURL()+path, nil)
	if err != nil {
		return usageError{fmt.Errorf("invalid --addr %q: %w", cf.Addr, err)}
	}
	if cf.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cf.Token)
	}
	client := cf.client()
	if follow {
		client = &http.Client{} // no deadline: Ctrl-C ends it
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("GET %s: %w (is an agent running there? see --addr)", cf.baseURL()+path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return httpError(http.MethodGet, path, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != logs.ContentType {
		return fmt.Errorf("GET %s: the answer is %q, not a log stream (%s): is --addr a murmur agent?", path, ct, logs.ContentType)
	}
	node := resp.Header.Get("X-Murmur-Node")
	fr := logs.NewFrameReader(resp.Body)
	for {
		typ, p, err := fr.Next()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("read the output from node %s: %w", node, err)
		}
		w := out
		switch typ {
		case logs.FrameStderr:
			w = errOut
		case logs.FrameError:
			return fmt.Errorf("the output stream ended: %s", p)
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
}
