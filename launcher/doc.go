// Package launcher runs a Discord bot as many processes from one binary.
package launcher
