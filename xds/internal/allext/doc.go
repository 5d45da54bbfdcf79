// Package allext blank-imports every Envoy extension and config proto package
// of the go-control-plane/envoy module, so that google.protobuf.Any type URLs
// in Envoy YAML resolve when shipped config files are parsed. Only tests
// import it: it costs build time and binary size.
//
// allext.go is generated: regenerate it after a go-control-plane upgrade
// with `go generate ./xds/internal/allext`.
package allext

//go:generate sh gen.sh
