//go:build !race

package auditquery

const raceEnabled = false
