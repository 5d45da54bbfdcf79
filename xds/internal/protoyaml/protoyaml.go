// Package protoyaml converts Envoy protobufs to and from YAML the way Envoy
// reads its own config files: YAML is turned into JSON and read with
// protojson (proto field names, Any with @type). Any type URLs must resolve
// in the global registry, so callers import the extension packages used.
package protoyaml

import (
	"bytes"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

var marshal = protojson.MarshalOptions{UseProtoNames: true}

// Marshal renders msgs as a YAML list. protojson's whitespace is unstable by
// design; the round trip through YAML normalizes it and sorts keys, so the
// output is stable enough for golden files.
func Marshal(msgs ...proto.Message) ([]byte, error) {
	items := make([]json.RawMessage, 0, len(msgs))
	for _, m := range msgs {
		b, err := marshal.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
		items = append(items, b)
	}
	j, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}

// Unmarshal reads one YAML document into m, rejecting unknown fields as
// Envoy does.
func Unmarshal(y []byte, m proto.Message) error {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return fmt.Errorf("yaml: empty document")
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(j, m); err != nil {
		return fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}
