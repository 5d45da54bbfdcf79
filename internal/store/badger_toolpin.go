package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// pToolPin + server + "/" + tool: server names hold no "/", so the first
// one ends the server and a prefix scan lists one server's pins.
const pToolPin = "toolpin/"

func toolPinKey(server, tool string) string { return pToolPin + server + "/" + tool }

func (b *Badger) CreateToolPin(_ context.Context, p ToolPin) error {
	if p.Server == "" || p.Tool == "" || strings.Contains(p.Server, "/") {
		return errors.New("a tool pin needs a server name (without '/') and a tool name")
	}
	p.Version = 1
	if err := b.create(toolPinKey(p.Server, p.Tool), p, time.Time{}); err != nil {
		return fmt.Errorf("create tool pin %q/%q: %w", p.Server, p.Tool, err)
	}
	return nil
}

func (b *Badger) GetToolPin(_ context.Context, server, tool string) (ToolPin, error) {
	p, err := readOne[ToolPin](b, toolPinKey(server, tool))
	if err != nil {
		return ToolPin{}, fmt.Errorf("get tool pin %q/%q: %w", server, tool, err)
	}
	return p, nil
}

func (b *Badger) UpdateToolPin(_ context.Context, server, tool string, fn func(ToolPin) (ToolPin, error)) error {
	err := update(b, toolPinKey(server, tool), nil, nil, func(p ToolPin) (ToolPin, error) {
		n, err := fn(p)
		n.Server, n.Tool = p.Server, p.Tool
		return n, err
	}, func(p *ToolPin) { p.Version++ })
	if err != nil {
		return fmt.Errorf("update tool pin %q/%q: %w", server, tool, err)
	}
	return nil
}

func (b *Badger) ListToolPins(_ context.Context, server string) ([]ToolPin, error) {
	prefix := pToolPin
	if server != "" {
		prefix += server + "/"
	}
	out, err := list[ToolPin](b, prefix, nil)
	if err != nil {
		return nil, fmt.Errorf("list tool pins: %w", err)
	}
	return out, nil
}
