package main

import "github.com/spf13/cobra"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "warden",
		Short:         "Identity, policy and audit for MCP traffic behind Envoy",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	af := &adminFlags{}
	clients := []*cobra.Command{newServersCmd(af), newTokensCmd(af), newRevokeCmd(af), newGrantsCmd(af), newAuditCmd(af), newKeysCmd(af), newAccessCmd(af), newProvidersCmd(af), newAccountsCmd(af)}
	for _, c := range clients {
		af.register(c)
	}
	root.AddCommand(newServeCmd(), newPolicyCmd(af), newEnvoyCmd(), newStoreCmd())
	root.AddCommand(clients...)
	return root
}
