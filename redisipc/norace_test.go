//go:build !race

package redisipc

const raceEnabled = false
