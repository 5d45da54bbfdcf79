package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/warden-mcp/warden/internal/store"
)

var toolPins = (&table[store.ToolPin]{
	what: "tool pin", name: "tool_pins", key: "id",
	cols:   []string{"server"},
	values: func(p store.ToolPin) []any { return []any{clean(p.Server)} },
	keyOf:  func(p store.ToolPin) string { return toolPinID(p.Server, p.Tool) },
	setKey: func(p *store.ToolPin, k string) {
		p.Server, p.Tool, _ = strings.Cut(k, "/")
	},
	version: func(p *store.ToolPin) *uint64 { return &p.Version },
}).build()

func toolPinID(server, tool string) string { return server + "/" + tool }

// listToolPinsSQL lists one server's pins; toolPins.listSQL lists all.
const listToolPinsSQL = "SELECT data FROM tool_pins WHERE server = $1 ORDER BY id"

func (s *Store) CreateToolPin(ctx context.Context, p store.ToolPin) error {
	if p.Server == "" || p.Tool == "" || strings.Contains(p.Server, "/") {
		return errors.New("a tool pin needs a server name (without '/') and a tool name")
	}
	if err := create(ctx, s, toolPins, p); err != nil {
		return fmt.Errorf("create tool pin %q/%q: %w", p.Server, p.Tool, err)
	}
	return nil
}

func (s *Store) GetToolPin(ctx context.Context, server, tool string) (store.ToolPin, error) {
	p, err := get(ctx, s, toolPins, toolPinID(server, tool))
	if err != nil {
		return store.ToolPin{}, fmt.Errorf("get tool pin %q/%q: %w", server, tool, err)
	}
	return p, nil
}

func (s *Store) UpdateToolPin(ctx context.Context, server, tool string, fn func(store.ToolPin) (store.ToolPin, error)) error {
	if err := update(ctx, s, toolPins, toolPinID(server, tool), fn); err != nil {
		return fmt.Errorf("update tool pin %q/%q: %w", server, tool, err)
	}
	return nil
}

func (s *Store) ListToolPins(ctx context.Context, server string) ([]store.ToolPin, error) {
	var out []store.ToolPin
	var err error
	if server == "" {
		out, err = list[store.ToolPin](ctx, s, "tool pin", toolPins.listSQL)
	} else {
		out, err = list[store.ToolPin](ctx, s, "tool pin", listToolPinsSQL, server)
	}
	if err != nil {
		return nil, fmt.Errorf("list tool pins: %w", err)
	}
	return out, nil
}
