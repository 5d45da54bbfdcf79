package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/internal/admin"
)

func newTokensCmd(af *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "Mint handles for service and agent identities"}
	var req admin.TokenRequest
	var output string
	create := &cobra.Command{
		Use:   "create --subject <id> --server <name> [--scope s] [--ttl 24h]",
		Short: "Mint an access handle for a non-human caller (printed once, stored hashed, audited)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var out admin.TokenResponse
			if _, err := c.do(cmd.Context(), "POST", "/api/v1/tokens", req, &out); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintln(cmd.OutOrStdout(), out.AccessToken)
			fmt.Fprintf(cmd.ErrOrStderr(), "grant %s, expires %s, for %v\nThe token is shown once; Warden keeps only its hash.\n", out.GrantID, out.ExpiresAt.Format(time.RFC3339), out.Resources)
			return nil
		},
	}
	create.Flags().StringVar(&req.Subject, "subject", "", "identity of the service or agent (required)")
	create.Flags().StringSliceVar(&req.Servers, "server", nil, "server the token is for (repeatable, required)")
	create.Flags().StringSliceVar(&req.Scopes, "scope", nil, "scope to grant (repeatable)")
	create.Flags().StringSliceVar(&req.Groups, "group", nil, "group of the service identity, seen by policy (repeatable)")
	create.Flags().StringVar(&req.TTL, "ttl", "", "lifetime, e.g. 1h (default 24h)")
	create.Flags().StringVar(&req.ClientID, "client-id", "", "client id to record (default service:<subject>)")
	create.Flags().StringVarP(&output, "output", "o", "text", "output: text (token on stdout) or json")
	cmd.AddCommand(create)
	return cmd
}
