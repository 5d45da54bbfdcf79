package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/internal/auditquery"
	"github.com/warden-mcp/warden/internal/store"
)

func qe(s string) string { return url.QueryEscape(s) }

func newAuditCmd(af *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the audit trail"}
	var n int
	var follow bool
	var asJSON bool
	tail := &cobra.Command{
		Use:   "tail [-n 50] [-f]",
		Short: "Show the newest audit events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var evs []store.AuditEvent
			if _, err := c.do(cmd.Context(), "GET", "/api/v1/audit?limit="+strconv.Itoa(n), nil, &evs); err != nil {
				return err
			}
			next := uint64(0)
			printEvents := func(evs []store.AuditEvent) {
				for _, e := range evs {
					if asJSON {
						raw, _ := json.Marshal(e)
						fmt.Fprintln(cmd.OutOrStdout(), string(raw))
					} else {
						fmt.Fprintln(cmd.OutOrStdout(), formatEvent(e))
					}
					next = e.Seq + 1
				}
			}
			printEvents(evs)
			for follow {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				evs = nil
				_, err := c.do(ctx, "GET", "/api/v1/audit?limit=1000&from="+strconv.FormatUint(next, 10), nil, &evs)
				cancel()
				if err != nil {
					return err
				}
				printEvents(evs)
			}
			return nil
		},
	}
	tail.Flags().IntVarP(&n, "lines", "n", 50, "how many events")
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	tail.Flags().BoolVar(&asJSON, "json", false, "print events as JSON lines")

	verify := &cobra.Command{
		Use:   "verify",
		Short: "Walk the hash chain and report the first broken link",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var rep struct {
				Events uint64 `json:"events"`
				First  uint64 `json:"first_seq"`
				Last   uint64 `json:"last_seq"`
				Broken uint64 `json:"broken_seq"`
				Reason string `json:"reason"`
				Anchor struct {
					Kind  string    `json:"kind"`
					Seq   uint64    `json:"seq"`
					KeyID string    `json:"key_id"`
					Time  time.Time `json:"time"`
				} `json:"anchor"`
				Untrusted []string `json:"untrusted_checkpoints"`
			}
			_, err = c.do(cmd.Context(), "GET", "/api/v1/audit/verify", nil, &rep)
			if isStatus(err, 409) {
				_ = json.Unmarshal(err.(*apiErr).body, &rep)
				return fmt.Errorf("audit chain BROKEN at event %d: %s (%d events checked, %d..%d)", rep.Broken, rep.Reason, rep.Events, rep.First, rep.Last)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit chain intact: %d events (seq %d..%d)\n", rep.Events, rep.First, rep.Last)
			switch rep.Anchor.Kind {
			case "checkpoint":
				fmt.Fprintf(cmd.OutOrStdout(), "anchored at the signed checkpoint of seq %d (key %s, %s); older events were pruned by retention\n", rep.Anchor.Seq, rep.Anchor.KeyID, rep.Anchor.Time.Format(time.RFC3339))
			case "oldest":
				fmt.Fprintf(cmd.OutOrStdout(), "anchored at the oldest stored event (seq %d), taken on trust\n", rep.Anchor.Seq)
			}
			for _, u := range rep.Untrusted {
				fmt.Fprintf(cmd.ErrOrStderr(), "passed over an untrusted %s\n", u)
			}
			return nil
		},
	}
	cmd.AddCommand(tail, verify, newAuditSearchCmd(af), newAuditExportCmd(af))
	return cmd
}

// auditQueryFlags are the audit search filters, shared by search and
// export and named as the API's parameters.
func auditQueryFlags(cmd *cobra.Command) url.Values {
	q := url.Values{}
	names := map[string]string{
		"user": "subject, or actor of admin events", "client": "client id", "server": "server name", "tool": "tool name",
		"method": "MCP method (tools/call, ...)", "decision": "allow or deny", "type": "event type (decision, grant_revoked, ...)",
		"reason": "text in the reason (any case)", "since": "from this time (RFC 3339) or this long ago (24h)",
		"until": "before this time (RFC 3339) or this long ago",
	}
	for _, k := range auditquery.Fields {
		cmd.Flags().Func(k, names[k], func(v string) error { q.Set(k, v); return nil })
	}
	return q
}

func newAuditSearchCmd(af *adminFlags) *cobra.Command {
	var limit int
	var asJSON bool
	var before uint64
	cmd := &cobra.Command{
		Use:   "search [--user u] [--server s] [--decision deny] [--since 24h] ...",
		Short: "Search the audit trail, newest first",
		Args:  cobra.NoArgs,
	}
	q := auditQueryFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := af.client()
		if err != nil {
			return err
		}
		q.Set("limit", strconv.Itoa(limit))
		if before > 0 {
			q.Set("before", strconv.FormatUint(before, 10))
		}
		var page auditquery.Page
		if _, err := c.do(cmd.Context(), "GET", "/api/v1/audit/search?"+q.Encode(), nil, &page); err != nil {
			return err
		}
		for _, e := range page.Events {
			if asJSON {
				raw, _ := json.Marshal(e)
				fmt.Fprintln(cmd.OutOrStdout(), string(raw))
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), formatEvent(e))
			}
		}
		if page.Next != 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "more: --before %d\n", page.Next)
		}
		return nil
	}
	cmd.Flags().IntVarP(&limit, "limit", "n", 50, "events per page (at most 1000)")
	cmd.Flags().Uint64Var(&before, "before", 0, "only events older than this sequence number (the next page)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print events as JSON lines")
	return cmd
}

func newAuditExportCmd(af *adminFlags) *cobra.Command {
	var format, output string
	cmd := &cobra.Command{
		Use:   "export --since 24h [--user u] ... [--format csv|ndjson] [-o file]",
		Short: "Export the events of a search, oldest first, as CSV or NDJSON (streamed)",
		Args:  cobra.NoArgs,
	}
	q := auditQueryFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if _, err := auditquery.ParseFormat(format); err != nil {
			return err
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		q.Set("format", format)
		w := cmd.OutOrStdout()
		if output != "" && output != "-" {
			f, err := os.OpenFile(output, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			defer f.Close()
			w = f
		}
		if err := c.stream(cmd.Context(), "/api/v1/audit/export?"+q.Encode(), w); err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		return nil
	}
	cmd.Flags().StringVar(&format, "format", "ndjson", "csv or ndjson")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file (mode 0600) instead of stdout")
	return cmd
}

func formatEvent(e store.AuditEvent) string {
	s := fmt.Sprintf("%6d %s %-14s", e.Seq, e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Type)
	add := func(k, v string) {
		if v != "" {
			s += " " + k + "=" + strconv.Quote(v)
		}
	}
	add("decision", e.Decision)
	if e.Status != 0 {
		s += " status=" + strconv.Itoa(e.Status)
	}
	add("actor", e.Actor)
	add("subject", e.Subject)
	add("client", e.ClientID)
	add("server", e.Server)
	add("method", e.Method)
	add("tool", e.Tool)
	add("grant", e.GrantID)
	add("reason", e.Reason)
	return s
}
