package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testcerts"
	"github.com/megane-go/megane/internal/testredis"
)

// tlsConfig returns the TLS configuration of the client New built.
func tlsConfig(t *testing.T, c redis.UniversalClient) *tls.Config {
	t.Helper()
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().TLSConfig
	case *redis.ClusterClient:
		return c.Options().TLSConfig
	}
	t.Fatalf("unexpected client %T", c)
	return nil
}

func TestTLSParamsConfigureTheClient(t *testing.T) {
	certs := testcerts.Write(t)
	q := "tls_ca_file=" + url.QueryEscape(certs.CA) + "&tls_cert_file=" + url.QueryEscape(certs.ClientCert) +
		"&tls_key_file=" + url.QueryEscape(certs.ClientKey) + "&tls_server_name=redis.internal&dial_timeout=3s"
	for _, u := range []string{
		"rediss://u:pw@127.0.0.1:6380/0?" + q,
		"rediss+cluster://127.0.0.1:7000?addr=127.0.0.1:7001&" + q,
		"rediss+sentinel://127.0.0.1:26379?master_name=m&" + q,
	} {
		c, err := New(u)
		if err != nil {
			t.Fatalf("New(%s): %v", Redact(u), err)
		}
		cfg := tlsConfig(t, c)
		if cfg == nil || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.ServerName != "redis.internal" ||
			cfg.InsecureSkipVerify || cfg.MinVersion < tls.VersionTLS12 {
			t.Errorf("New(%s): TLS config %+v", Redact(u), cfg)
		}
		_ = c.Close()
	}

	c, err := New("rediss://127.0.0.1:6380?skip_verify=true")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := tlsConfig(t, c); cfg == nil || !cfg.InsecureSkipVerify || cfg.ServerName != "127.0.0.1" {
		t.Errorf("skip_verify: TLS config %+v", cfg)
	}
	_ = c.Close()
}

func TestTLSParamsReportBadFilesAndMisuse(t *testing.T) {
	certs := testcerts.Write(t)
	notPEM := filepath.Join(t.TempDir(), "notpem.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.crt")
	tests := []struct {
		name, url string
		want      error
		mention   string
	}{
		{"missing CA file", "rediss://h:1?tls_ca_file=" + missing, ErrBadTLS, "missing.crt"},
		{"CA file without PEM", "rediss://h:1?tls_ca_file=" + notPEM, ErrBadTLS, "no PEM certificate"},
		{"certificate without key", "rediss://h:1?tls_cert_file=" + certs.ClientCert, ErrBadURL, "tls_key_file"},
		{"key without certificate", "rediss://h:1?tls_key_file=" + certs.ClientKey, ErrBadURL, "tls_cert_file"},
		{"key of another certificate", "rediss://h:1?tls_cert_file=" + certs.ClientCert + "&tls_key_file=" + certs.ServerKey, ErrBadTLS, "client.crt"},
		{"key file is a certificate", "rediss://h:1?tls_cert_file=" + certs.ClientCert + "&tls_key_file=" + certs.CA, ErrBadTLS, "tls_key_file"},
		{"TLS parameter on redis://", "redis://h:1?tls_ca_file=" + certs.CA, ErrBadURL, "rediss://"},
		{"TLS parameter on redis+cluster://", "redis+cluster://h:1?tls_server_name=x", ErrBadURL, "rediss://"},
		{"empty parameter", "rediss://h:1?tls_ca_file=", ErrBadURL, "tls_ca_file is empty"},
		{"unknown parameter", "rediss://h:1?tls_ca=" + certs.CA, ErrBadURL, "tls_ca"},
	}
	for _, tt := range tests {
		_, err := New(tt.url)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("%s: New error = %v, want %v mentioning %q", tt.name, err, tt.want, tt.mention)
		}
	}
}

// TestTLSDialsARealServer runs a redis-server that requires TLS with client
// certificates, and connects to it with every TLS parameter.
func TestTLSDialsARealServer(t *testing.T) {
	certs := testcerts.Write(t)
	srv := testredis.StartServer(t, testredis.ServerOptions{TLS: &certs, TLSAuthClients: true})
	other := testcerts.Write(t) // an authority the server does not know
	client := "&tls_cert_file=" + url.QueryEscape(certs.ClientCert) + "&tls_key_file=" + url.QueryEscape(certs.ClientKey)
	base := "rediss://" + srv.Addr + "/0?dial_timeout=2s&max_retries=0"
	ctx := context.Background()

	works := map[string]string{
		"CA and client certificate":     base + "&tls_ca_file=" + url.QueryEscape(certs.CA) + client,
		"server name given":             base + "&tls_ca_file=" + url.QueryEscape(certs.CA) + "&tls_server_name=localhost" + client,
		"skip_verify, any server cert":  base + "&skip_verify=true" + client,
		"localhost, name from the host": "rediss://localhost:" + strings.Split(srv.Addr, ":")[1] + "?tls_ca_file=" + url.QueryEscape(certs.CA) + client,
	}
	for name, u := range works {
		c, err := Open(ctx, u)
		if err != nil {
			t.Errorf("%s: Open: %v", name, err)
			continue
		}
		if err := c.Set(ctx, "megane:tls:k", name, 0).Err(); err != nil {
			t.Errorf("%s: SET: %v", name, err)
		}
		if got, err := c.Get(ctx, "megane:tls:k").Result(); err != nil || got != name {
			t.Errorf("%s: GET = %q, %v", name, got, err)
		}
		_ = c.Close()
	}

	fails := []struct {
		name, url, mention string
	}{
		{"system roots only", base + client, "certificate"},
		{"another authority", base + "&tls_ca_file=" + url.QueryEscape(other.CA) + client, "certificate"},
		{"a name the certificate lacks", base + "&tls_ca_file=" + url.QueryEscape(certs.CA) + "&tls_server_name=redis.example" + client, "redis.example"},
		{"no client certificate", base + "&tls_ca_file=" + url.QueryEscape(certs.CA), ""},
		{"client certificate of another authority", base + "&tls_ca_file=" + url.QueryEscape(certs.CA) +
			"&tls_cert_file=" + url.QueryEscape(other.ClientCert) + "&tls_key_file=" + url.QueryEscape(other.ClientKey), ""},
		{"plain redis:// to a TLS port", "redis://" + srv.Addr + "?dial_timeout=2s&max_retries=0&read_timeout=300ms", ""},
	}
	for _, tt := range fails {
		c, err := Open(ctx, tt.url)
		if err == nil {
			_ = c.Close()
			t.Errorf("%s: Open succeeded", tt.name)
			continue
		}
		t.Logf("%s: %v", tt.name, err)
		if !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("%s: error %q does not mention %q", tt.name, err, tt.mention)
		}
	}
}
