package identify_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/identify"
)

func TestFetchGatewayInfo(t *testing.T) {
	srv, err := discordtest.NewServer(discordtest.Options{Shards: 6, MaxConcurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	info, err := identify.FetchGatewayInfo(ctx, nil, srv.RESTURL(), srv.Token())
	if err != nil {
		t.Fatal(err)
	}
	if info.Shards != 6 || info.MaxConcurrency != 4 || info.URL != srv.GatewayURL() || info.Remaining != 1000 ||
		info.Total != 1000 || info.MaxConcurrencyOverride || time.Until(info.ResetAt) <= 0 {
		t.Errorf("gateway/bot %+v", info)
	}
	if _, err := identify.FetchGatewayInfo(ctx, nil, srv.RESTURL(), discordtest.TokenFor(99)); !errors.Is(err, identify.ErrTokenRejected) {
		t.Errorf("wrong token: %v", err)
	}

	for _, tc := range []struct {
		name, want string
		status     int
		body       string
	}{
		{"implausible", "implausible", http.StatusOK, `{"url":"wss://x","shards":0}`},
		{"undecodable", "decode", http.StatusOK, `{"shards":`},
		{"server error", "502 Bad Gateway: upstream down", http.StatusBadGateway, "upstream down\n"},
	} {
		broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(tc.body))
		}))
		if _, err := identify.FetchGatewayInfo(ctx, nil, broken.URL, "x"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.name, err, tc.want)
		}
		broken.Close()
	}
}
