#!/bin/sh
# Regenerates allext.go from the go-control-plane/envoy module in go.mod.
set -eu
dir=$(go list -m -f '{{.Dir}}' github.com/envoyproxy/go-control-plane/envoy)
{
  sed -n '1,/^import (/p' allext.go
  (cd "$dir" && find extensions config -name '*.pb.go' -exec dirname {} \; | sort -u) |
    sed 's|^|	_ "github.com/envoyproxy/go-control-plane/envoy/|; s|$|"|'
  echo ')'
} > allext.go.new
mv allext.go.new allext.go
gofmt -l . >/dev/null
