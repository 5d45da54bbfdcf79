package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/internal/admin"
	"github.com/warden-mcp/warden/internal/grant"
)

func newRevokeCmd(af *adminFlags) *cobra.Command {
	var req admin.RevokeRequest
	cmd := &cobra.Command{
		Use:   "revoke (--grant <id> | --user <subject> | --client <id> | --server <name> | --connector <name> | --provider <name> [--user <subject>])",
		Short: "Revoke access in one operation; effective on the next request",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			if req.Provider != "" {
				var out grant.AccountResult
				if _, err := c.do(cmd.Context(), "POST", "/api/v1/revoke", req, &out); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked %d connected account(s) at %s\n", len(out.Revoked), req.Provider)
				for _, a := range out.Revoked {
					fmt.Fprintln(cmd.OutOrStdout(), "  revoked", a)
				}
				return nil
			}
			var out grant.Result
			if _, err := c.do(cmd.Context(), "POST", "/api/v1/revoke", req, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %d grant(s), narrowed %d, removed %d consent(s), narrowed %d service client(s)\n",
				len(out.Revoked), len(out.Narrowed), out.ConsentsRemoved, len(out.ClientsNarrowed))
			for _, g := range out.Revoked {
				fmt.Fprintln(cmd.OutOrStdout(), "  revoked", g)
			}
			for _, g := range out.Narrowed {
				fmt.Fprintln(cmd.OutOrStdout(), "  narrowed", g)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&req.GrantID, "grant", "", "grant id")
	cmd.Flags().StringVar(&req.Subject, "user", "", "subject: every grant of this user")
	cmd.Flags().StringVar(&req.ClientID, "client", "", "client id: every grant of this client")
	cmd.Flags().StringVar(&req.Server, "server", "", "server name: everyone's access to this server")
	cmd.Flags().StringVar(&req.Connector, "connector", "", "IdP connector (oidc, static): every grant of users who signed in through it")
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why (recorded in the audit trail)")
	cmd.Flags().StringVar(&req.Provider, "provider", "", "provider name: the accounts connected at it (only --user's with --user)")
	cmd.MarkFlagsMutuallyExclusive("grant", "user", "client", "server", "connector")
	cmd.MarkFlagsMutuallyExclusive("grant", "provider")
	cmd.MarkFlagsMutuallyExclusive("client", "provider")
	cmd.MarkFlagsMutuallyExclusive("server", "provider")
	cmd.MarkFlagsMutuallyExclusive("connector", "provider")
	cmd.MarkFlagsOneRequired("grant", "user", "client", "server", "connector", "provider")
	return cmd
}

func newGrantsCmd(af *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "grants", Short: "Who has access to which servers"}
	var user, client, server string
	var all bool
	list := &cobra.Command{
		Use:   "list [--user u] [--client c] [--server s] [--all]",
		Short: "List grants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			q := "?user=" + qe(user) + "&client=" + qe(client) + "&server=" + qe(server)
			if all {
				q += "&all=true"
			}
			var out []map[string]any
			if _, err := c.do(cmd.Context(), "GET", "/api/v1/grants"+q, nil, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	list.Flags().StringVar(&user, "user", "", "only this subject")
	list.Flags().StringVar(&client, "client", "", "only this client")
	list.Flags().StringVar(&server, "server", "", "only grants covering this server")
	list.Flags().BoolVar(&all, "all", false, "include revoked grants")
	cmd.AddCommand(list)
	return cmd
}
