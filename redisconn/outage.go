package redisconn

import (
	"errors"
	"io"
	"net"
	"net/url"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// outagePrefixes are the Redis error replies that mean "the server cannot
// serve this now" rather than "this command is wrong": out of memory under
// noeviction, loading its dataset after a restart, a replica after a
// failover, a cluster or Sentinel without a master, a busy script.
var outagePrefixes = []string{
	"OOM", "LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN",
	"BUSY", "NOREPLICAS", "MISCONF", "NOTREADY",
}

// IsOutage reports whether err is Redis being unavailable (unreachable, a
// dropped or timed-out connection, a deadline passed waiting for it, or one
// of the error replies OOM, LOADING, READONLY, MASTERDOWN, CLUSTERDOWN,
// TRYAGAIN, BUSY, NOREPLICAS, MISCONF), as opposed to a bad command, a missing key or a context the
// caller ended. Such an error says nothing about the process that got it:
// retry once Redis works again.
//
// Network errors of HTTP requests (a *url.Error in the chain, e.g. a REST
// call to Discord) are not Redis outages.
func IsOutage(err error) bool {
	if err == nil {
		return false
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		for _, p := range outagePrefixes {
			if redis.HasErrorPrefix(err, p) {
				return true
			}
		}
		return false
	}
	if errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}
