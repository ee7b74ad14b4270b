//go:build race

package redisipc

// raceEnabled builds the test program with -race when the tests run with it.
const raceEnabled = true
