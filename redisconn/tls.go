package redisconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// ErrBadTLS is returned when a TLS file named in a rediss URL cannot be read
// or holds no usable certificate or key.
var ErrBadTLS = errors.New("redisconn: bad TLS file")

// The query parameters this package reads itself; go-redis refuses
// parameters it does not know, so they are taken out before it parses.
const (
	paramCAFile     = "tls_ca_file"
	paramCertFile   = "tls_cert_file"
	paramKeyFile    = "tls_key_file"
	paramServerName = "tls_server_name"
)

// tlsParams are the TLS settings of a URL.
type tlsParams struct {
	caFile, certFile, keyFile, serverName string
}

func (p tlsParams) any() bool {
	return p.caFile != "" || p.certFile != "" || p.keyFile != "" || p.serverName != ""
}

// takeTLSParams returns raw without the tls_* query parameters, and their
// values. Other parameters are kept, in their order.
func takeTLSParams(raw string) (string, tlsParams, error) {
	var p tlsParams
	head, query, ok := strings.Cut(raw, "?")
	if !ok {
		return raw, p, nil
	}
	query, fragment, hasFragment := strings.Cut(query, "#")
	var kept []string
	for _, part := range strings.Split(query, "&") {
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(name)
		if err != nil {
			return "", p, fmt.Errorf("query parameter %q: %w", name, err)
		}
		var dst *string
		switch key {
		case paramCAFile:
			dst = &p.caFile
		case paramCertFile:
			dst = &p.certFile
		case paramKeyFile:
			dst = &p.keyFile
		case paramServerName:
			dst = &p.serverName
		default:
			kept = append(kept, part)
			continue
		}
		v, err := url.QueryUnescape(value)
		if err != nil {
			return "", p, fmt.Errorf("query parameter %s: %w", key, err)
		}
		if v == "" {
			return "", p, fmt.Errorf("query parameter %s is empty", key)
		}
		*dst = v
	}
	out := head
	if len(kept) > 0 {
		out += "?" + strings.Join(kept, "&")
	}
	if hasFragment {
		out += "#" + fragment
	}
	return out, p, nil
}

// apply reads the files named by p into cfg, the TLS configuration go-redis
// built for a rediss URL.
func (p tlsParams) apply(cfg *tls.Config) error {
	if cfg == nil || !p.any() {
		return nil
	}
	if p.serverName != "" {
		cfg.ServerName = p.serverName
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if p.caFile != "" {
		pem, err := os.ReadFile(p.caFile)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadTLS, paramCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%w: %s %s holds no PEM certificate", ErrBadTLS, paramCAFile, p.caFile)
		}
		cfg.RootCAs = pool
	}
	if (p.certFile == "") != (p.keyFile == "") {
		return fmt.Errorf("%w: %s and %s go together (a client certificate and its key)", ErrBadURL, paramCertFile, paramKeyFile)
	}
	if p.certFile != "" {
		cert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
		if err != nil {
			return fmt.Errorf("%w: %s %s with %s %s: %w", ErrBadTLS, paramCertFile, p.certFile, paramKeyFile, p.keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return nil
}
