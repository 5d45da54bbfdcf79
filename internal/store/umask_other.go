//go:build !unix

package store

// privateFiles: file modes are not Unix permission bits here.
func privateFiles() {}

// statfsFree reports no limit where statfs(2) does not exist.
func statfsFree(string) (uint64, error) { return ^uint64(0), nil }
