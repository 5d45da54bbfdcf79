package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// expandStrings replaces ${NAME} references in every string value of the
// parsed configuration (struct fields, list items and map values) with the
// environment variable NAME. It runs after the YAML is parsed, so keys,
// comments, numbers and durations are never touched, and a `$` anywhere
// else is kept as written: a bcrypt hash ("$2y$12$...") reads as is.
// "$${" is a literal "${". A reference to a variable that is not set is an
// error unless allowUnset (the CLI, which reads the server's file without
// its secrets), so a secret missing from the environment never silently
// becomes an empty string (an empty client secret would make a public
// client).
func expandStrings(v reflect.Value, path string, lookup func(string) (string, bool), allowUnset bool) error {
	var errs []error
	walkStrings(v, path, func(field, s string) (string, bool) {
		out, err := expandString(s, lookup, allowUnset)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			return s, false
		}
		return out, out != s
	})
	return errors.Join(errs...)
}

// walkStrings calls fn for every string reachable from v, named by its YAML
// path, and stores the result when fn reports a change.
func walkStrings(v reflect.Value, path string, fn func(field, s string) (string, bool)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkStrings(v.Elem(), path, fn)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
			if tag == "" || tag == "-" || !t.Field(i).IsExported() {
				continue
			}
			walkStrings(v.Field(i), join(path, tag), fn)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			walkStrings(v.Index(i), fmt.Sprintf("%s[%d]", path, i), fn)
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
			return
		}
		for _, k := range v.MapKeys() {
			if out, changed := fn(join(path, k.String()), v.MapIndex(k).String()); changed {
				v.SetMapIndex(k, reflect.ValueOf(out).Convert(v.Type().Elem()))
			}
		}
	case reflect.String:
		if out, changed := fn(path, v.String()); changed {
			v.SetString(out)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// ErrUnsetVariable is returned (wrapped, naming the field) for a ${NAME}
// whose variable is not set.
var ErrUnsetVariable = errors.New("environment variable is not set")

// expandString expands ${NAME} in s. NAME is a shell variable name
// ([A-Za-z_][A-Za-z0-9_]*); "$${" stands for a literal "${"; any other "$"
// is literal. A "${" that does not start a valid reference is an error, so a
// typo such as ${WARDEN-SECRET} is reported instead of kept.
func expandString(s string, lookup func(string) (string, bool), allowUnset bool) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ (write $${ for a literal ${)")
			}
			name := s[i+2 : i+2+end]
			if !validEnvName(name) {
				return "", fmt.Errorf("${%s}: not a variable name (write $${ for a literal ${)", name)
			}
			val, ok := lookup(name)
			if !ok && !allowUnset {
				return "", fmt.Errorf("${%s}: %w", name, ErrUnsetVariable)
			}
			b.WriteString(val)
			i += 2 + end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), nil
}

func validEnvName(n string) bool {
	if n == "" {
		return false
	}
	for i, r := range n {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
