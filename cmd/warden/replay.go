package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/policy"
	"github.com/warden-mcp/warden/policy/replay"
)

func newPolicyReplayCmd(af *adminFlags) *cobra.Command {
	var req replay.Request
	var dir, output string
	cmd := &cobra.Command{
		Use:   "replay --policy <dir> [--since 24h] [--server s] [--limit n]",
		Short: "Which recorded decisions a candidate policy would decide otherwise",
		Long: `Replay sends the candidate policy in <dir> (its .rego and data files, as
Warden loads a policy directory; tests excluded) to the running Warden,
which re-evaluates the decision inputs recorded in the audit trail against
it and lists the decisions that would change: allow -> deny and
deny -> allow, with counts. Nothing changes on the server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mods, err := policy.Files(dir)
			if err != nil {
				return err
			}
			req.Modules = mods
			c, err := af.client()
			if err != nil {
				return err
			}
			var res replay.Result
			if _, err := c.do(cmd.Context(), "POST", "/api/v1/policy/replay", req, &res); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			return printReplay(cmd.OutOrStdout(), res)
		},
	}
	cmd.Flags().StringVar(&dir, "policy", "", "directory of the candidate policy (required)")
	cmd.Flags().StringVar(&req.Since, "since", "24h", "replay decisions since this RFC 3339 time or duration ago")
	cmd.Flags().StringVar(&req.Server, "server", "", "only this server's decisions")
	cmd.Flags().IntVar(&req.Limit, "limit", 0, fmt.Sprintf("at most this many decisions (default %d, at most %d)", replay.DefaultLimit, replay.MaxLimit))
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	_ = cmd.MarkFlagRequired("policy")
	af.register(cmd)
	return cmd
}

func printReplay(w io.Writer, res replay.Result) error {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	if len(res.Changed) > 0 {
		fmt.Fprintln(tw, "TIME\tCHANGE\tUSER\tCLIENT\tSERVER\tMETHOD\tTOOL\tREASON NOW\tREASON THEN\tREQUEST\tNOTE")
	}
	for _, c := range res.Changed {
		note := ""
		if len(c.Redacted) > 0 {
			note = "decided on redacted arguments: " + strings.Join(c.Redacted, ",")
		}
		fmt.Fprintf(tw, "%s\t%s -> %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Time.UTC().Format("2006-01-02T15:04:05Z"), c.OldDecision, c.NewDecision,
			c.Subject, c.ClientID, c.Server, c.Method, c.Tool, c.NewReason, c.OldReason, c.RequestID, note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d decisions evaluated: %d allow -> deny, %d deny -> allow", res.Evaluated, res.AllowToDeny, res.DenyToAllow)
	if err == nil && res.Skipped > 0 {
		_, err = fmt.Fprintf(w, " (%d without a recorded input skipped)", res.Skipped)
	}
	if err == nil && res.Redacted > 0 {
		_, err = fmt.Fprintf(w, "; %d decided on redacted arguments", res.Redacted)
	}
	if err == nil {
		_, err = fmt.Fprintln(w)
	}
	return err
}
