package admin

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/seal"
)

// LoadOrCreateToken reads the admin token file, creating it (mode 0600)
// with a fresh token on first start. The server keeps only its hash; the
// file exists so a CLI running beside the server can authenticate.
func LoadOrCreateToken(path string) (token string, created bool, err error) {
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		tok := strings.TrimSpace(string(raw))
		if !strings.HasPrefix(tok, handle.PrefixAdmin) {
			return "", false, fmt.Errorf("admin token file %s is not a Warden admin token", path)
		}
		return tok, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", false, fmt.Errorf("read admin token: %w", err)
	}
	tok, _ := handle.New(handle.PrefixAdmin)
	if err := seal.WriteFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("write admin token: %w", err)
	}
	return tok, true, nil
}
