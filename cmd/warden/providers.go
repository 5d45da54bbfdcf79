package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/internal/admin"
	"github.com/warden-mcp/warden/internal/upstream"
)

func newProvidersCmd(af *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "providers", Short: "Third-party credential providers for servers in provider mode"}
	var output string
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", "output format: table or json")

	var spec upstream.ProviderSpec
	var secretEnv string
	var params []string
	add := &cobra.Command{
		Use:   "add <name> (--authorize-url <url> --token-url <url> | --issuer <url>) --client-id <id> [--client-secret <s> | --client-secret-env VAR] [--scope s ...] | add <name> --kind api_key [--header name]",
		Short: "Register a provider; prints the callback URL to register at it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			if secretEnv != "" {
				if spec.ClientSecret = os.Getenv(secretEnv); spec.ClientSecret == "" {
					return fmt.Errorf("--client-secret-env %s: variable is empty or unset", secretEnv)
				}
			}
			for _, kv := range params {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--auth-param %q: want key=value", kv)
				}
				if spec.AuthParams == nil {
					spec.AuthParams = map[string]string{}
				}
				spec.AuthParams[k] = v
			}
			c, err := af.client()
			if err != nil {
				return err
			}
			var out admin.ProviderView
			if _, err := c.do(cmd.Context(), "POST", "/api/v1/providers", spec, &out); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "provider %s added (%s)\n", out.Name, out.Kind)
			if out.CallbackURL != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "register this redirect URI at the provider: %s\n", out.CallbackURL)
			}
			return nil
		},
	}
	add.Flags().StringVar(&spec.Kind, "kind", "", "oauth (default) or api_key")
	add.Flags().StringVar(&spec.Issuer, "issuer", "", "discover the endpoints from this issuer's metadata")
	add.Flags().StringVar(&spec.AuthorizeURL, "authorize-url", "", "the provider's authorization endpoint")
	add.Flags().StringVar(&spec.TokenURL, "token-url", "", "the provider's token endpoint")
	add.Flags().StringVar(&spec.ClientID, "client-id", "", "Warden's client id at the provider")
	add.Flags().StringVar(&spec.ClientSecret, "client-secret", "", "Warden's client secret at the provider (sealed at rest; prefer --client-secret-env)")
	add.Flags().StringVar(&secretEnv, "client-secret-env", "", "name of an environment variable holding the client secret")
	add.Flags().StringSliceVar(&spec.Scopes, "scope", nil, "scope to request (repeatable)")
	add.Flags().StringSliceVar(&params, "auth-param", nil, "extra authorization request parameter key=value (repeatable)")
	add.Flags().StringVar(&spec.Header, "header", "", "api_key: header the key is sent in (default Authorization, as a bearer token)")
	add.MarkFlagsMutuallyExclusive("client-secret", "client-secret-env")

	list := &cobra.Command{
		Use:   "list",
		Short: "List providers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var out []admin.ProviderView
			if _, err := c.do(cmd.Context(), "GET", "/api/v1/providers", nil, &out); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tCLIENT\tSCOPES\tCALLBACK")
			for _, p := range out {
				callback := p.CallbackURL
				if p.Kind == "api_key" {
					callback = "(header " + p.Header + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.Kind, p.ClientID, strings.Join(p.Scopes, " "), callback)
			}
			return tw.Flush()
		},
	}
	remove := &cobra.Command{
		Use:   "remove <name>",
		Short: "Remove a provider and revoke every account connected at it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), "DELETE", "/api/v1/providers/"+qe(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "provider %s removed\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}

func newAccountsCmd(af *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "accounts", Short: "Upstream accounts users connected at providers"}
	var output, user, provider string
	list := &cobra.Command{
		Use:   "list [--user <sub>] [--provider <name>]",
		Short: "List connected accounts (never their tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var out []admin.AccountView
			if _, err := c.do(cmd.Context(), "GET", "/api/v1/accounts?user="+qe(user)+"&provider="+qe(provider), nil, &out); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tPROVIDER\tCONNECTED\tREFRESHED\tEXPIRES")
			for _, a := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Subject, a.Provider, a.ConnectedAt, dash(a.RefreshedAt), dash(a.ExpiresAt))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	list.Flags().StringVar(&user, "user", "", "only this subject")
	list.Flags().StringVar(&provider, "provider", "", "only this provider")
	cmd.AddCommand(list)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
