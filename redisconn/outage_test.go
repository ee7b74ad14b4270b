package redisconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// redisReply is a server error reply as go-redis returns it.
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}

func TestIsOutage(t *testing.T) {
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"oom", redisReply("OOM command not allowed when used memory > 'maxmemory'."), true},
		{"oom wrapped", fmt.Errorf("cluster: register: %w", redisReply("OOM command not allowed")), true},
		{"loading", redisReply("LOADING Redis is loading the dataset in memory"), true},
		{"readonly", redisReply("READONLY You can't write against a read only replica."), true},
		{"clusterdown", redisReply("CLUSTERDOWN The cluster is down"), true},
		{"wrongtype", redisReply("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{"nogroup", redisReply("NOGROUP No such key"), false},
		{"nil reply", redis.Nil, false},
		{"refused", fmt.Errorf("redisconn: ping: %w", opErr), true},
		{"reset", fmt.Errorf("x: %w", syscall.ECONNRESET), true},
		{"eof", io.EOF, true},
		{"pool timeout", redis.ErrPoolTimeout, true},
		{"cancelled", context.Canceled, false},
		{"http", fmt.Errorf("cluster: GET /gateway/bot: %w", &url.Error{Op: "Get", URL: "http://x", Err: opErr}), false},
		{"other", errors.New("launch failed"), false},
	} {
		if got := IsOutage(tc.err); got != tc.want {
			t.Errorf("%s: IsOutage(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
