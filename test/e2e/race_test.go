//go:build race

package e2e

// raceEnabled: the test runs under the race detector, so the warden binary
// it builds is instrumented too.
const raceEnabled = true
