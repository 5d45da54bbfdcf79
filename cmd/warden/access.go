package main

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/internal/admin"
	"github.com/warden-mcp/warden/internal/console"
)

func newAccessCmd(af *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "access", Short: "The access matrix: who can reach which MCP server"}
	var f admin.AccessFilter
	var output string
	list := &cobra.Command{
		Use:   "list [--user u] [--group g] [--server s] [--client c]",
		Short: "Users and agents by server, with scopes, grant age, last use and client",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"user": f.User, "group": f.Group, "server": f.Server, "client": f.Client} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var rows []admin.AccessEntry
			if _, err := c.do(cmd.Context(), "GET", "/api/v1/access?"+q.Encode(), nil, &rows); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "SUBJECT\tKIND\tSERVER\tSCOPES\tCLIENT\tSOURCE\tGRANTED\tLAST USED\tGRANT")
			now := time.Now()
			for _, e := range rows {
				client := e.ClientID
				if e.ClientName != "" && e.ClientName != e.ClientID {
					client = e.ClientName + " (" + e.ClientID + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Subject, e.Kind, e.Server, strings.Join(e.Scopes, " "),
					client, e.ClientSource, console.Ago(now.Sub(e.GrantedAt)), lastUsed(now, e.LastUsed), e.GrantID)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&f.User, "user", "", "only this subject or email")
	list.Flags().StringVar(&f.Group, "group", "", "only identities in this group")
	list.Flags().StringVar(&f.Server, "server", "", "only this server")
	list.Flags().StringVar(&f.Client, "client", "", "only this client (id or name)")
	list.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.AddCommand(list)
	return cmd
}

func lastUsed(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return console.Ago(now.Sub(t))
}
