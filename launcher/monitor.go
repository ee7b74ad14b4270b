package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/megane-go/megane/monitor"
)

// validateHTTPAddr checks HTTPAddr: "off", or host:port with a port in
// 0..65535.
func (c *Config) validateHTTPAddr(bad func(format string, args ...any)) {
	if c.HTTPAddr == "" || strings.EqualFold(c.HTTPAddr, monitor.Off) {
		return
	}
	_, port, err := net.SplitHostPort(c.HTTPAddr)
	if err != nil {
		bad("%s=%q is not host:port (like 127.0.0.1:9190) or %q (Config.HTTPAddr)", envHTTPAddr, c.HTTPAddr, monitor.Off)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		bad("%s=%q: port %q is outside 0..65535 (Config.HTTPAddr)", envHTTPAddr, c.HTTPAddr, port)
	}
}

// startMonitor serves the metrics, health checks and status page on
// HTTPAddr. An address that cannot be opened is logged and skipped: the
// bot runs without them rather than not at all.
func (l *Launcher) startMonitor(cleanups *[]func()) {
	if strings.EqualFold(l.cfg.HTTPAddr, monitor.Off) {
		return
	}
	srv := monitor.New(monitor.Options{
		Addr: l.cfg.HTTPAddr, Redis: l.rdb, Keys: l.ks, Logger: l.log,
		Local: l.Status,
	})
	if err := srv.Start(); err != nil {
		l.log.Warn("metrics, health checks and status page are off: cannot listen (set MEGANE_HTTP_ADDR to another address, or off)",
			slog.String("addr", l.cfg.HTTPAddr), slog.Any("error", err))
		return
	}
	l.monitorURL = srv.URL()
	l.log.Info("serving metrics, health checks and the status page",
		slog.String("url", srv.URL()), slog.String("metrics", srv.URL()+"metrics"))
	*cleanups = append(*cleanups, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			l.log.Warn("stopping the status page", slog.Any("error", fmt.Errorf("launcher: %w", err)))
		}
	})
}
