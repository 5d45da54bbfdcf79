package config

import (
	"fmt"
	"os"
)

// Client is what the admin CLI needs to reach a running Warden. It comes
// from the same file and environment as the server's configuration, so a
// CLI run beside the server finds it wherever listen.admin and
// keys.admin_token_file point.
type Client struct {
	// AdminURL is the admin API's base URL: WARDEN_ADMIN_ADDR when set,
	// otherwise http:// and listen.admin (an unspecified host as 127.0.0.1).
	AdminURL string
	// AdminToken is WARDEN_ADMIN_TOKEN; empty means read AdminTokenFile.
	AdminToken     string
	AdminTokenFile string
	// PostgresDSN is store.postgres.dsn (WARDEN_STORE_POSTGRES_DSN), for
	// `warden store migrate`.
	PostgresDSN string
}

// LoadClient reads path (empty: defaults and environment only) the way Load
// does, except that a ${VAR} whose variable is unset reads as empty (the
// operator's shell need not hold the server's secrets) and only what the
// client uses is validated.
func LoadClient(path string) (Client, error) {
	c, err := load(path, os.LookupEnv, true)
	if err != nil {
		return Client{}, err
	}
	addr := DialAddress(c.Listen.Admin)
	if addr == "" {
		return Client{}, fmt.Errorf("listen.admin: invalid address %q", c.Listen.Admin)
	}
	cl := Client{
		AdminURL:       "http://" + addr,
		AdminToken:     c.Keys.AdminToken,
		AdminTokenFile: c.Keys.AdminTokenFile,
		PostgresDSN:    c.Store.Postgres.DSN,
	}
	if v := os.Getenv("WARDEN_ADMIN_ADDR"); v != "" {
		cl.AdminURL = v
	}
	return cl, nil
}
