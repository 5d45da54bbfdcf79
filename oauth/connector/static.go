package connector

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/warden-mcp/warden/internal/seal"
)

// StaticUser is one local user; PasswordHash is a bcrypt hash.
type StaticUser struct {
	Username     string
	Email        string
	Name         string
	Groups       []string
	PasswordHash string
}

// Static checks user names and bcrypt password hashes Warden holds itself
// (trials, labs).
type Static struct {
	users map[string]StaticUser
	// dummy is compared against when the user does not exist, so a wrong
	// user name costs as much time as a wrong password.
	dummy []byte
}

var _ Password = (*Static)(nil)

// NewStatic returns a connector over users.
func NewStatic(users []StaticUser) *Static {
	s := &Static{users: map[string]StaticUser{}}
	for _, u := range users {
		s.users[u.Username] = u
	}
	s.dummy, _ = bcrypt.GenerateFromPassword([]byte("warden-dummy-password"), bcrypt.DefaultCost)
	return s
}

// Login implements Password.
func (s *Static) Login(_ context.Context, username, password string) (Identity, error) {
	u, ok := s.users[username]
	hash := s.dummy
	if ok {
		hash = []byte(u.PasswordHash)
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !ok {
		return Identity{}, ErrBadCredentials
	}
	claims := map[string]any{"sub": u.Username, "preferred_username": u.Username}
	if u.Email != "" {
		claims["email"] = u.Email
	}
	if len(u.Groups) > 0 {
		claims["groups"] = u.Groups
	}
	return Identity{Subject: u.Username, Email: u.Email, Name: u.Name, Groups: u.Groups, Claims: claims}, nil
}

// Bootstrap is the local admin user Warden creates when the static
// connector has no users configured.
type Bootstrap struct {
	User StaticUser
	// Password is set only on the start that generated it; afterwards only
	// the bcrypt hash exists.
	Password string
	// File keeps the user (with the hash) across restarts.
	File string
}

type bootstrapFile struct {
	Username     string    `json:"username"`
	PasswordHash string    `json:"password_hash"`
	CreatedAt    time.Time `json:"created_at"`
}

// BootstrapAdmin loads the generated admin user from dataDir, creating it
// with a random password (returned once) when the file does not exist.
// Delete the file to get a new password.
func BootstrapAdmin(dataDir string, now time.Time) (Bootstrap, error) {
	path := filepath.Join(dataDir, "static-admin.json")
	b := Bootstrap{File: path}
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		var f bootstrapFile
		if err := json.Unmarshal(raw, &f); err != nil {
			return b, fmt.Errorf("parse %s: %w", path, err)
		}
		if f.Username == "" || !strings.HasPrefix(f.PasswordHash, "$2") {
			return b, fmt.Errorf("%s: missing user name or bcrypt hash", path)
		}
		b.User = adminUser(f.Username, f.PasswordHash)
		return b, nil
	case !errors.Is(err, os.ErrNotExist):
		return b, fmt.Errorf("read %s: %w", path, err)
	}
	var pw [18]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return b, err
	}
	b.Password = base64.RawURLEncoding.EncodeToString(pw[:])
	hash, err := bcrypt.GenerateFromPassword([]byte(b.Password), 12)
	if err != nil {
		return b, fmt.Errorf("hash admin password: %w", err)
	}
	f := bootstrapFile{Username: "admin", PasswordHash: string(hash), CreatedAt: now.UTC()}
	out, _ := json.MarshalIndent(f, "", "  ")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return b, fmt.Errorf("create data dir: %w", err)
	}
	if err := seal.WriteFileAtomic(path, out, 0o600); err != nil {
		return b, fmt.Errorf("write %s: %w", path, err)
	}
	b.User = adminUser(f.Username, f.PasswordHash)
	return b, nil
}

func adminUser(name, hash string) StaticUser {
	return StaticUser{Username: name, Name: "Warden administrator (local trial user)", Groups: []string{"warden-admins"}, PasswordHash: hash}
}

// Banner is the text to print at start for a freshly generated admin user.
func (b Bootstrap) Banner() string {
	if b.Password == "" {
		return ""
	}
	return fmt.Sprintf(`
==================================================================
 Warden created a local sign-in user for trials. NOT FOR PRODUCTION.
   user:     %s
   password: %s
 This password is shown once; its bcrypt hash is in %s.
 Configure oauth.connector (type: oidc) for your identity provider.
==================================================================
`, b.User.Username, b.Password, b.File)
}

func decodeJWTPayload(raw string, v any) error {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return err
	}
	return json.Unmarshal(payload, v)
}
