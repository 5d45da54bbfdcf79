package auditsink

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// File appends one event per line to Path, and when the next line would
// take it past MaxBytes, renames it to Path.1 (Path.1 to Path.2, and so
// on), keeping Keep rotated files and deleting older ones.
type File struct {
	Path     string
	MaxBytes int64
	Keep     int

	f    *os.File
	size int64
}

// OpenFile opens (or creates, 0600) the file sink.
func OpenFile(path string, maxBytes int64, keep int) (*File, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("audit file sink %s: max size must be positive", path)
	}
	if keep < 0 {
		return nil, fmt.Errorf("audit file sink %s: keep must not be negative", path)
	}
	s := &File{Path: path, MaxBytes: maxBytes, Keep: keep}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *File) open() error {
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	f, err := os.OpenFile(s.Path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit file sink: %w", err)
	}
	s.f, s.size = f, fi.Size()
	return nil
}

// WriteEvent appends line and a newline, rotating first when needed. A
// line larger than MaxBytes is written alone in its own file.
func (s *File) WriteEvent(_, line []byte) error {
	n := int64(len(line) + 1)
	if s.size > 0 && s.size+n > s.MaxBytes {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	buf := make([]byte, 0, n)
	buf = append(append(buf, line...), '\n')
	w, err := s.f.Write(buf)
	s.size += int64(w)
	if err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	return nil
}

func (s *File) rotate() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	name := func(i int) string { return s.Path + "." + strconv.Itoa(i) }
	if s.Keep == 0 {
		_ = os.Remove(s.Path)
	} else {
		_ = os.Remove(name(s.Keep))
		for i := s.Keep - 1; i >= 1; i-- {
			if err := os.Rename(name(i), name(i+1)); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("audit file sink: rotate: %w", err)
			}
		}
		if err := os.Rename(s.Path, name(1)); err != nil {
			return fmt.Errorf("audit file sink: rotate: %w", err)
		}
	}
	return s.open()
}

// Close closes the file.
func (s *File) Close() error { return s.f.Close() }
