package main

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/toolpin"
)

// toolList is the answer of GET /api/v1/servers/{name}/tools.
type toolList struct {
	Server string           `json:"server"`
	Tools  []toolpin.Status `json:"tools"`
}

func newToolsCmd(af *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "tools", Short: "Tool pinning: the tool definitions Warden recorded per server"}
	var server, tool, output string
	list := &cobra.Command{
		Use:   "list --server <name>",
		Short: "The server's tools: pinned, changed (with the description diff) or new",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var l toolList
			if _, err := c.do(cmd.Context(), "GET", "/api/v1/servers/"+url.PathEscape(server)+"/tools", nil, &l); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), l)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "TOOL\tSTATE\tAPPROVED\tLISTED\tAPPROVED BY")
			for _, t := range l.Tools {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Tool, t.State, shortDigest(t.Approved), shortDigest(t.Seen), t.ApprovedBy)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, t := range l.Tools {
				if t.DescriptionDiff != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "\n%s: description changed:\n  %s\n", t.Tool, strings.ReplaceAll(t.DescriptionDiff, "\n", "\n  "))
				}
			}
			return nil
		},
	}
	list.Flags().StringVar(&server, "server", "", "the MCP server (required)")
	list.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	_ = list.MarkFlagRequired("server")
	approve := &cobra.Command{
		Use:   "approve --server <name> --tool <tool>",
		Short: "Approve the definition the server lists now for a changed or new tool",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var pin store.ToolPin
			path := "/api/v1/servers/" + url.PathEscape(server) + "/tools/" + url.PathEscape(tool) + "/approve"
			if _, err := c.do(cmd.Context(), "POST", path, nil, &pin); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approved %s on %s: %s\n", pin.Tool, pin.Server, pin.Approved)
			return nil
		},
	}
	approve.Flags().StringVar(&server, "server", "", "the MCP server (required)")
	approve.Flags().StringVar(&tool, "tool", "", "the tool (required)")
	_ = approve.MarkFlagRequired("server")
	_ = approve.MarkFlagRequired("tool")
	cmd.AddCommand(list, approve)
	return cmd
}

func shortDigest(d string) string {
	if d == "" {
		return "-"
	}
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}
