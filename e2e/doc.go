// Package e2e holds end-to-end tests of Megane for Go: real cluster and
// service processes (built from e2e/internal/e2ebot, or the launcher's test
// bot, without the race detector, since disgo's gateway races), a real
// redis-server and the fake Discord of package discordtest in the test
// process. Run them with scripts/test ./e2e/...; without a real Redis they
// skip. The TLS and ACL tests (security_test.go) start redis-servers of
// their own and skip only when redis-server is not installed.
package e2e
