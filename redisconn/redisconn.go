// Package redisconn opens the Redis client every Megane process shares, from a
// URL, and starts an embedded Redis for demos when no URL is given.
//
// URL forms (all go-redis options are accepted as query parameters):
//
//	redis://[user:pass@]host:port/db           single node
//	rediss://...                               single node over TLS
//	redis+cluster://host:port?addr=host2:port  Redis Cluster (seed nodes)
//	redis+sentinel://host:port?master_name=m   Sentinel (addr= adds sentinels)
//
// The "+cluster" and "+sentinel" forms may also start with "rediss".
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// ErrBadURL is returned for a Redis URL that cannot be parsed.
var ErrBadURL = errors.New("redisconn: bad Redis URL")

// Open parses url, connects and PINGs, so a wrong or dead Redis is reported
// before anything starts. The caller closes the client.
func Open(ctx context.Context, url string) (redis.UniversalClient, error) {
	c, err := New(url)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redisconn: ping %s: %w", Redact(url), err)
	}
	return c, nil
}

// New parses url and returns a client without touching the network.
func New(url string) (redis.UniversalClient, error) {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return nil, fmt.Errorf("%w: %q has no scheme (want redis://host:port)", ErrBadURL, Redact(url))
	}
	base, mode, _ := strings.Cut(scheme, "+")
	if base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("%w: unknown scheme %q", ErrBadURL, scheme)
	}
	plain := base + "://" + rest
	switch mode {
	case "":
		o, err := redis.ParseURL(plain)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
		}
		return redis.NewClient(o), nil
	case "cluster":
		o, err := redis.ParseClusterURL(plain)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
		}
		return redis.NewClusterClient(o), nil
	case "sentinel":
		o, err := redis.ParseFailoverURL(plain)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
		}
		if o.MasterName == "" {
			return nil, fmt.Errorf("%w: sentinel URL needs master_name=", ErrBadURL)
		}
		return redis.NewFailoverClient(o), nil
	default:
		return nil, fmt.Errorf("%w: unknown scheme %q", ErrBadURL, scheme)
	}
}

// Redact returns url with any password replaced by "***", for logs.
func Redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return url
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return url
	}
	return scheme + "://" + user + ":***" + rest[at:]
}

// Embedded is an in-process Redis (miniredis) listening on loopback. It is
// for demos and single-machine trials: it keeps everything in memory and
// dies with the process that started it.
type Embedded struct {
	srv *miniredis.Miniredis
}

// StartEmbedded starts an embedded Redis on 127.0.0.1 at a free port.
func StartEmbedded() (*Embedded, error) {
	s := miniredis.NewMiniRedis()
	if err := s.Start(); err != nil {
		return nil, fmt.Errorf("redisconn: start embedded redis: %w", err)
	}
	return &Embedded{srv: s}, nil
}

// Addr returns host:port of the embedded server.
func (e *Embedded) Addr() string { return e.srv.Addr() }

// URL returns the redis:// URL of the embedded server.
func (e *Embedded) URL() string { return "redis://" + e.srv.Addr() }

// Close stops the server.
func (e *Embedded) Close() { e.srv.Close() }
