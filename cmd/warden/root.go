package main

import "github.com/spf13/cobra"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "warden",
		Short:         "Identity, policy and audit for MCP traffic behind Envoy",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	return root
}
