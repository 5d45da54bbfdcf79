//go:build race

package auditquery

// raceEnabled: the race detector slows the million-event export about
// fifteen times, so under it only the CSV export runs.
const raceEnabled = true
