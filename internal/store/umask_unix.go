//go:build unix

package store

import "syscall"

// privateFiles makes every file the process creates from now on private to
// its owner. Badger creates its memory-mapped tables, logs and discard file
// with mode 0666 less the umask and has no option for the mode; the store
// holds handles' digests, grants and sealed secrets, so they must be 0600
// like the key files. Warden creates no file meant for others to read.
func privateFiles() { syscall.Umask(0o077) }

// statfsFree is the space left on dir's volume for unprivileged writers
// (f_bavail: the root-reserved blocks are not Warden's to fill).
func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
