package main

import (
	"github.com/warden-mcp/warden/internal/mcptask"
	"github.com/warden-mcp/warden/internal/store"
)

// taskStore is where the response path records the call that created each
// MCP task (a tools/call answered with a CreateTaskResult) and where
// ext_authz finds it for tasks/get, tasks/update and tasks/cancel. It
// lives in the store's TTL sessions, so every replica on a shared store
// sees the tasks the others recorded.
func taskStore(st store.Store) *mcptask.Store {
	return mcptask.New(st, mcptask.Options{})
}
