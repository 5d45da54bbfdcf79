package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/policy"
)

func newPolicyCmd(af *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with Rego policies"}
	var verbose bool
	test := &cobra.Command{
		Use:   "test <dir>",
		Short: "Run the Rego tests (*_test.rego) in dir, like opa test",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			passed, failed, err := policy.RunTests(cmd.Context(), args[0], cmd.OutOrStdout(), verbose)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "PASS: %d/%d\n", passed, passed+failed)
			if failed > 0 {
				return fmt.Errorf("%d policy test(s) failed", failed)
			}
			return nil
		},
	}
	test.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every test")
	cmd.AddCommand(test, newPolicyReplayCmd(af))
	return cmd
}
