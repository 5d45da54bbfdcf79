//go:build !unix

package store

// privateFiles: file modes are not Unix permission bits here.
func privateFiles() {}
