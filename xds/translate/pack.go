package translate

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface {
	proto.Message
	ValidateAll() error
}

// deterministic marshalling keeps map fields (context_extensions) in a
// stable order inside Any, so equal configs hash and compare equal.
var deterministic = proto.MarshalOptions{Deterministic: true}

// pack validates m and wraps it in an Any. go-control-plane's ValidateAll
// does not descend into Any, so every typed config is validated here, before
// it disappears into bytes.
func pack(m validator) (*anypb.Any, error) {
	if err := m.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, deterministic); err != nil {
		return nil, fmt.Errorf("pack %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}
