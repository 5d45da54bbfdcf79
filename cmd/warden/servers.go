package main

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/internal/admin"
	"github.com/warden-mcp/warden/internal/registry"
)

func newServersCmd(af *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "servers", Short: "Register and manage MCP servers"}
	var output string
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", "output format: table or json")

	specFlags := func(c *cobra.Command, s *registry.Spec, labels *[]string) {
		c.Flags().StringVar(&s.URL, "url", "", "upstream URL of the MCP endpoint (http or https)")
		c.Flags().StringVar(&s.Credential, "credential", "", "upstream credential: jwt (default), static, none, idp, exchange or provider")
		c.Flags().StringVar(&s.IdPAudience, "idp-audience", "", "idp: audience (RFC 8707 resource) of the IdP token Warden gets for this server with the user's refresh token; exchange: audience to exchange the user's IdP token for")
		c.Flags().StringSliceVar(&s.IdPScopes, "idp-scope", nil, "idp and exchange: scope to request at the IdP, narrowing the token (repeatable)")
		c.Flags().StringVar(&s.Provider, "provider", "", "provider: the provider whose per-user account is attached")
		c.Flags().StringVar(&s.Unconnected, "unconnected", "", "provider: for users without an account: elicit (tools/call, resources/read, prompts/get; default), elicit_all or pass")
		c.Flags().StringSliceVar(&s.Scopes, "scope", nil, "scope a token needs for this server (repeatable)")
		c.Flags().StringSliceVar(&s.StepUpScopes, "step-up-scope", nil, "scope this server's policy may ask a call for (repeatable; grantable, never required)")
		c.Flags().StringSliceVar(labels, "label", nil, "label key=value (repeatable)")
		c.Flags().StringVar(&s.Description, "description", "", "human description")
		c.Flags().StringVar(&s.Pinning, "pinning", "", "tool pinning: warn (default: audit and count changed tool definitions) or block (hide and refuse them until approved)")
		c.Flags().StringVar(&s.PinNewTools, "pin-new-tools", "", "in block mode, new tools: approve (default) or wait for an admin")
		c.Flags().StringVar(&s.StaticHeader, "static-header", "", "header carrying the static credential (default Authorization)")
		c.Flags().BoolVar(&s.HTTP2, "http2", false, "speak HTTP/2 to the upstream")
		c.Flags().StringVar(&s.ConnectTimeout, "connect-timeout", "", "upstream connect timeout, e.g. 5s")
		c.Flags().StringVar(&s.IdleTimeout, "idle-timeout", "", "stream idle timeout, e.g. 1h")
		c.Flags().StringVar(&s.RequestTimeout, "request-timeout", "", "non-streaming request timeout")
	}
	readSecret := func(s *registry.Spec, fromEnv string) error {
		if fromEnv == "" {
			return nil
		}
		v := os.Getenv(fromEnv)
		if v == "" {
			return fmt.Errorf("--static-secret-env %s: variable is empty or unset", fromEnv)
		}
		s.StaticSecret = v
		return nil
	}
	parseLabels := func(in []string) (map[string]string, error) {
		if len(in) == 0 {
			return nil, nil
		}
		out := map[string]string{}
		for _, kv := range in {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("label %q: want key=value", kv)
			}
			out[k] = v
		}
		return out, nil
	}

	var add registry.Spec
	var addLabels []string
	var addSecretEnv string
	addCmd := &cobra.Command{
		Use:   "add <name> --url <upstream>",
		Short: "Register an MCP server",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			add.Name = args[0]
			if add.Labels, err = parseLabels(addLabels); err != nil {
				return err
			}
			if err := readSecret(&add, addSecretEnv); err != nil {
				return err
			}
			var out admin.ServerView
			if _, err := c.do(cmd.Context(), "POST", "/api/v1/servers", add, &out); err != nil {
				return err
			}
			return show(cmd, output, out)
		},
	}
	specFlags(addCmd, &add, &addLabels)
	// Secrets come from the environment, never from argv (visible in ps).
	addCmd.Flags().StringVar(&addSecretEnv, "static-secret-env", "", "name of an environment variable holding the static credential")

	var upd registry.Spec
	var updLabels []string
	var updSecretEnv string
	updateCmd := &cobra.Command{
		Use:   "update <name> --url <upstream> [flags]",
		Short: "Replace a server's settings (unset flags clear the setting; the static secret is kept unless given)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			upd.Name = args[0]
			if upd.Labels, err = parseLabels(updLabels); err != nil {
				return err
			}
			if err := readSecret(&upd, updSecretEnv); err != nil {
				return err
			}
			var out admin.ServerView
			if _, err := c.do(cmd.Context(), "PUT", "/api/v1/servers/"+url.PathEscape(upd.Name), upd, &out); err != nil {
				return err
			}
			return show(cmd, output, out)
		},
	}
	specFlags(updateCmd, &upd, &updLabels)
	updateCmd.Flags().StringVar(&updSecretEnv, "static-secret-env", "", "name of an environment variable holding a new static credential")

	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List registered servers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var out []admin.ServerView
			if _, err := c.do(cmd.Context(), "GET", "/api/v1/servers", nil, &out); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tUPSTREAM\tCREDENTIAL\tSCOPES\tSOURCE\tRESOURCE")
			for _, s := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.URL, s.Credential, strings.Join(s.Scopes, ","), s.Source, s.Resource)
			}
			return tw.Flush()
		},
	}
	getCmd := &cobra.Command{
		Use:   "get <name>",
		Short: "Show one server",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var out map[string]any
			if _, err := c.do(cmd.Context(), "GET", "/api/v1/servers/"+url.PathEscape(args[0]), nil, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	removeCmd := &cobra.Command{
		Use:     "remove <name>",
		Aliases: []string{"rm"},
		Short:   "Remove a server (Envoy drops its routes on the next push)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), "DELETE", "/api/v1/servers/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "server %s removed\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(addCmd, updateCmd, listCmd, getCmd, removeCmd)
	return cmd
}

func show(cmd *cobra.Command, output string, s admin.ServerView) error {
	if output == "json" {
		return printJSON(cmd.OutOrStdout(), s)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "server %s: %s -> %s (credential %s)\n", s.Name, s.Resource, s.URL, s.Credential)
	if s.XDSError != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: Envoy will not get this server: %s\n", s.XDSError)
	}
	return nil
}
