// Package redisconn opens the Redis client every Megane process shares, from a
// URL. The embedded Redis that demos start when no URL is given lives in
// [github.com/megane-go/megane/redisconn/embedded], so that this package does
// not link miniredis.
//
// URL forms (all go-redis options are accepted as query parameters):
//
//	redis://[user:pass@]host:port/db           single node
//	rediss://...                               single node over TLS
//	redis+cluster://host:port?addr=host2:port  Redis Cluster (seed nodes)
//	redis+sentinel://host:port?master_name=m   Sentinel (addr= adds sentinels)
//
// The "+cluster" and "+sentinel" forms may also start with "rediss". A
// rediss URL takes these TLS parameters besides go-redis's own:
//
//	tls_ca_file=/path       PEM CA certificate(s) trusted instead of the system's roots
//	tls_cert_file=/path     PEM client certificate, for servers that require one
//	tls_key_file=/path      PEM private key of tls_cert_file (both or neither)
//	tls_server_name=name    name the server certificate must carry (default: the URL's host)
//	skip_verify=true        go-redis's own: accept any server certificate (testing only)
//
// The files are read when the URL is parsed, so a missing or unreadable file is
// reported before anything starts ([ErrBadTLS]). TLS parameters on a redis://
// URL are refused rather than ignored.
//
// Errors and log lines never carry the URL's password: they show it through
// [Redact].
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
		return nil, fmt.Errorf("redisconn: ping %s: %w", Redact(url), scrub(err, url))
	}
	return c, nil
}

// New parses url and returns a client without touching the network (TLS
// files named in the URL are read).
func New(url string) (redis.UniversalClient, error) {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return nil, fmt.Errorf("%w: %q has no scheme (want redis://host:port)", ErrBadURL, Redact(url))
	}
	base, mode, _ := strings.Cut(scheme, "+")
	if base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("%w: unknown scheme %q", ErrBadURL, scheme)
	}
	plain, tp, err := takeTLSParams(base + "://" + rest)
	if err != nil {
		return nil, scrub(fmt.Errorf("%w: %w", ErrBadURL, err), url)
	}
	if base != "rediss" && tp.any() {
		return nil, fmt.Errorf("%w: %s: TLS parameters need a rediss:// URL", ErrBadURL, Redact(url))
	}
	badURL := func(err error) error { return scrub(fmt.Errorf("%w: %w", ErrBadURL, err), url) }
	switch mode {
	case "":
		o, err := redis.ParseURL(plain)
		if err != nil {
			return nil, badURL(err)
		}
		if err := tp.apply(o.TLSConfig); err != nil {
			return nil, err
		}
		return redis.NewClient(o), nil
	case "cluster":
		o, err := redis.ParseClusterURL(plain)
		if err != nil {
			return nil, badURL(err)
		}
		if err := tp.apply(o.TLSConfig); err != nil {
			return nil, err
		}
		return redis.NewClusterClient(o), nil
	case "sentinel":
		o, err := redis.ParseFailoverURL(plain)
		if err != nil {
			return nil, badURL(err)
		}
		if o.MasterName == "" {
			return nil, fmt.Errorf("%w: sentinel URL needs master_name=", ErrBadURL)
		}
		if err := tp.apply(o.TLSConfig); err != nil {
			return nil, err
		}
		return redis.NewFailoverClient(o), nil
	default:
		return nil, fmt.Errorf("%w: unknown scheme %q", ErrBadURL, scheme)
	}
}
