package toolpin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// pinnedMembers are the members of an MCP Tool definition a pin covers:
// what a model reads to decide what a tool does and how to call it. Other
// members (title, icons, _meta, execution hints) may change freely.
var pinnedMembers = []string{"name", "description", "inputSchema", "outputSchema", "annotations"}

// Definition is one tool definition of a tools/list result, reduced to
// what is pinned.
type Definition struct {
	Name string
	// Canonical is the pinned members as canonical JSON: object members
	// sorted by name, no insignificant space, numbers as written, no
	// HTML escaping. Equal definitions have equal bytes whatever the
	// member order or spacing of the server's JSON.
	Canonical json.RawMessage
	// Digest is "sha256:" and the hex SHA-256 of Canonical.
	Digest string
}

// Parse reads one tool of a tools/list result.
func Parse(raw json.RawMessage) (Definition, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return Definition{}, fmt.Errorf("tool definition: %w", err)
	}
	name, _ := obj["name"].(string)
	if name == "" {
		return Definition{}, errors.New("tool definition has no name")
	}
	pinned := make(map[string]any, len(pinnedMembers))
	for _, k := range pinnedMembers {
		if v, ok := obj[k]; ok {
			pinned[k] = v
		}
	}
	canon, err := canonical(pinned)
	if err != nil {
		return Definition{}, fmt.Errorf("tool %q: %w", name, err)
	}
	sum := sha256.Sum256(canon)
	return Definition{Name: name, Canonical: canon, Digest: "sha256:" + hex.EncodeToString(sum[:])}, nil
}

// canonical encodes v (decoded with UseNumber) with sorted object members:
// encoding/json sorts map keys, and json.Number keeps each number's text.
func canonical(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// description returns the description member of a canonical definition.
func description(canon json.RawMessage) string {
	var d struct {
		Description string `json:"description"`
	}
	_ = json.Unmarshal(canon, &d)
	return d.Description
}

// DescriptionDiff is a readable line diff of two descriptions: unchanged
// lines indented two spaces, removed ones "- ", added ones "+ ". It is
// what an admin reads in the audit trail before approving.
func DescriptionDiff(old, new string) string {
	a, b := strings.Split(old, "\n"), strings.Split(new, "\n")
	if old == new {
		return ""
	}
	// Longest common subsequence of lines; descriptions are short.
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			out.WriteString("  " + a[i] + "\n")
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			out.WriteString("- " + a[i] + "\n")
			i++
		default:
			out.WriteString("+ " + b[j] + "\n")
			j++
		}
	}
	return strings.TrimSuffix(out.String(), "\n")
}
