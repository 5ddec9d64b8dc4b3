package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rayhost/rayhost/gossip"
)

// newKeygenCmd makes `rayhost keygen`: a fresh gossip key. Every host of a
// cluster takes the same one with --encrypt (or RAYHOST_ENCRYPT); it
// encrypts and authenticates gossip, and the hosts derive their
// credentials for each other from it. A cluster whose gossip is reachable
// beyond loopback refuses to start without one.
func newKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new cluster key for --encrypt",
		Long: "Print a new random cluster key (32 bytes, base64). Give the same key to every host of the cluster:\n" +
			"  rayhost start --encrypt KEY ...   and   rayhost join --encrypt KEY SEED ...\n" +
			"or set RAYHOST_ENCRYPT=KEY. Hosts whose gossip is reachable from other machines need one.",
		Example: `  rayhost keygen
  KEY=$(rayhost keygen 2>/dev/null)
  rayhost start --listen 10.0.0.1:6380 --encrypt "$KEY" --token "$TOKEN"
  rayhost join 10.0.0.1:7946 --listen 10.0.0.2:6380 --encrypt "$KEY" --token "$TOKEN"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			key := gossip.GenerateKey()
			fmt.Fprintln(cmd.OutOrStdout(), key)
			fmt.Fprintf(cmd.ErrOrStderr(), "give it to every host: --encrypt %s (or RAYHOST_ENCRYPT); keep it secret\n", key)
			return nil
		},
	}
}
