package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/internal/config"
)

// adminFlags locate and authenticate to a running Warden's admin API. Unset
// flags fall back to the server's own configuration (--config or
// WARDEN_CONFIG, and the WARDEN_* environment), read by config.LoadClient.
type adminFlags struct {
	config  string
	addr    string
	token   string
	dataDir string
}

func (f *adminFlags) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVarP(&f.config, "config", "c", config.PathFromEnv(), "the server's YAML config file, to find listen.admin and the admin token file (env "+config.PathEnv+")")
	fl.StringVar(&f.addr, "admin-addr", "", "admin API address (default: env WARDEN_ADMIN_ADDR, else listen.admin of the config)")
	fl.StringVar(&f.token, "admin-token", "", "admin token (default: env WARDEN_ADMIN_TOKEN, else read from keys.admin_token_file)")
	fl.StringVar(&f.dataDir, "data-dir", "", "data directory of the server, to read <data-dir>/admin-token (default: data_dir of the config)")
}

func (f *adminFlags) client() (*adminClient, error) {
	cc, err := config.LoadClient(f.config)
	if err != nil {
		return nil, err
	}
	tok := f.token
	if tok == "" {
		tok = cc.AdminToken
	}
	if tok == "" {
		file := cc.AdminTokenFile
		if f.dataDir != "" {
			file = filepath.Join(f.dataDir, "admin-token")
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("no admin token: pass --admin-token, set WARDEN_ADMIN_TOKEN, or run beside the server (%v)", err)
		}
		tok = strings.TrimSpace(string(raw))
	}
	addr := cc.AdminURL
	if f.addr != "" {
		addr = f.addr
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &adminClient{base: strings.TrimRight(addr, "/"), token: tok, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// adminClient calls the admin API. The server records the admin token's
// name as the actor of every change: give each operator or pipeline its
// own token (admin.tokens) to tell them apart in the audit trail.
type adminClient struct {
	base, token string
	http        *http.Client
}

// do sends a JSON request and decodes a JSON answer into out (if non-nil).
// Non-2xx answers become errors carrying the server's message.
func (c *adminClient) do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return resp.StatusCode, &apiErr{status: resp.StatusCode, msg: e.Error, body: raw}
		}
		return resp.StatusCode, &apiErr{status: resp.StatusCode, msg: strings.TrimSpace(string(raw)), body: raw}
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// stream copies the body of a GET to w as it arrives, with no timeout
// on the whole transfer (an export of a long trail takes its time). A
// transfer the server breaks off fails: the output is then incomplete.
func (c *adminClient) stream(ctx context.Context, path string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &apiErr{status: resp.StatusCode, msg: msg, body: raw}
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

type apiErr struct {
	status int
	msg    string
	body   []byte
}

func (e *apiErr) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.msg, e.status) }

func isStatus(err error, status int) bool {
	var ae *apiErr
	return errors.As(err, &ae) && ae.status == status
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
