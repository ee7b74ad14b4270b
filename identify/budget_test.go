package identify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

func TestGatewayInfoRoundTrip(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("test")
	ctx := context.Background()

	if _, err := LoadGatewayInfo(ctx, rdb, ks); !errors.Is(err, ErrNoGatewayInfo) {
		t.Fatalf("Load on empty = %v, want ErrNoGatewayInfo", err)
	}
	want := GatewayInfo{
		URL: "wss://gateway.discord.gg", Shards: 16, MaxConcurrency: 4,
		Total: 1000, Remaining: 990, ResetAt: time.UnixMilli(1_800_000_000_123),
		MaxConcurrencyOverride: true,
	}
	if err := SaveGatewayInfo(ctx, rdb, ks, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadGatewayInfo(ctx, rdb, ks)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ResetAt.Equal(want.ResetAt) {
		t.Fatalf("ResetAt = %s, want %s", got.ResetAt, want.ResetAt)
	}
	got.ResetAt = want.ResetAt
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestCheckBudget(t *testing.T) {
	ctx := context.Background()
	ks := keyspace.MustNew("test")
	future := time.Now().Add(time.Hour)
	tests := []struct {
		name       string
		info       *GatewayInfo
		identifies int
		reserve    int
		wantErr    bool
		remaining  string // remaining afterwards, when set
	}{
		{name: "unknown budget allows", identifies: 100},
		{name: "fits", info: &GatewayInfo{Total: 1000, Remaining: 10, ResetAt: future}, identifies: 4, reserve: 6},
		{name: "eats reserve", info: &GatewayInfo{Total: 1000, Remaining: 10, ResetAt: future}, identifies: 4, reserve: 7, wantErr: true},
		{name: "exhausted", info: &GatewayInfo{Total: 1000, Remaining: 0, ResetAt: future}, identifies: 1, wantErr: true},
		{name: "no identifies always fit", info: &GatewayInfo{Total: 1000, Remaining: 0, ResetAt: future}, identifies: 0, reserve: 5},
		{name: "reset passed restores total", info: &GatewayInfo{Total: 1000, Remaining: 0, ResetAt: time.Now().Add(-time.Second)}, identifies: 16, reserve: 5, remaining: "1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, rdb := testredis.Mini(t)
			if tt.info != nil {
				if err := SaveGatewayInfo(ctx, rdb, ks, *tt.info); err != nil {
					t.Fatal(err)
				}
			}
			err := CheckBudget(ctx, rdb, ks, tt.identifies, tt.reserve)
			if tt.wantErr {
				if !errors.Is(err, ErrSessionStartLimit) {
					t.Fatalf("err = %v, want ErrSessionStartLimit", err)
				}
				if !strings.Contains(err.Error(), "remaining") || !strings.Contains(err.Error(), "resets at") {
					t.Fatalf("error lacks the numbers: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.remaining != "" {
				if got := m.HGet(ks.Gateway(), "remaining"); got != tt.remaining {
					t.Fatalf("remaining = %q, want %q", got, tt.remaining)
				}
				info, _ := LoadGatewayInfo(ctx, rdb, ks)
				if !info.ResetAt.After(time.Now()) {
					t.Fatalf("reset_at not moved forward: %s", info.ResetAt)
				}
			}
		})
	}
}
