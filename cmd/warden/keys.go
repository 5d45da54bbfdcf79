package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/internal/admin"
)

func newKeysCmd(af *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Rotate Warden's keys"}
	var req admin.RotateRequest
	rotate := &cobra.Command{
		Use:   "rotate [--signing] [--sealing]",
		Short: "Make a new key active (both when no flag is given); older keys stay to verify and open what they signed or sealed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var out map[string]string
			if _, err := c.do(cmd.Context(), "POST", "/api/v1/keys/rotate", req, &out); err != nil {
				return err
			}
			names := make([]string, 0, len(out))
			for k := range out {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "%s key rotated: new key id %s\n", k, out[k])
			}
			return nil
		},
	}
	rotate.Flags().BoolVar(&req.Signing, "signing", false, "rotate the JWT signing key (published in the JWKS)")
	rotate.Flags().BoolVar(&req.Sealing, "sealing", false, "rotate the key-encryption key for secrets at rest")
	cmd.AddCommand(rotate)
	return cmd
}
