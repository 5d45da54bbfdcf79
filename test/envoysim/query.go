package envoysim

import (
	"sort"
	"strings"
)

// queryParams mirrors Envoy's Http::Utility::QueryParamsMulti: raw (not
// percent-decoded) keys mapping to their values, serialised in key order
// because Envoy keeps them in an absl::btree_map.
type queryParams map[string][]string

func parseQuery(q string) queryParams {
	out := queryParams{}
	if q == "" {
		return out
	}
	for _, part := range strings.Split(q, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		out[k] = append(out[k], v)
	}
	return out
}

func (q queryParams) first(k string) (string, bool) {
	v, ok := q[k]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (q queryParams) encode() string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	delim := "?"
	for _, k := range keys {
		for _, v := range q[k] {
			b.WriteString(delim)
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(v)
			delim = "&"
		}
	}
	return b.String()
}

// replaceQuery rebuilds a :path with new query parameters.
func replaceQuery(full string, q queryParams) string {
	path, _ := splitPath(full)
	return path + q.encode()
}
