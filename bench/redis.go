package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is the bench's own redis-server: no persistence, a free
// loopback port, a directory of its own; stopped by stop (and, should the
// bench die, by the kernel: it is in the bench's process group and gets
// its SIGINT).
type redisServer struct {
	addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startRedis starts redis-server from PATH (scripts/test installs the
// Debian package redis-server when it is missing; so can the user).
func startRedis() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is not installed (apt-get install redis-server, or see scripts/test): %w", err)
	}
	dir, err := os.MkdirTemp("", "megane-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, exited: make(chan struct{})}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
			"--loglevel", "warning", "--logfile", filepath.Join(dir, "redis.log"))
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		go func() { _ = s.cmd.Wait(); close(s.exited) }()
		if lastErr = s.waitPing(10 * time.Second); lastErr == nil {
			return s, nil
		}
		s.stop()
	}
	log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("redis-server did not start: %w; log:\n%s", lastErr, log)
}

func (s *redisServer) waitPing(d time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return errors.New("redis-server exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG after %s: %w", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// url is the server's redis:// URL.
func (s *redisServer) url() string { return "redis://" + s.addr + "/0" }

// stop kills the server, waits for it and removes its directory.
func (s *redisServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	_ = os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// redisVersion is the server's redis_version.
func redisVersion(ctx context.Context, rdb redis.UniversalClient) string {
	return infoField(ctx, rdb, "server", "redis_version")
}

// infoField is one field of INFO section.
func infoField(ctx context.Context, rdb redis.UniversalClient, section, name string) string {
	info, err := rdb.Info(ctx, section).Result()
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), name+":"); ok {
			return v
		}
	}
	return "?"
}

// infoInt is a numeric field of INFO section (0 when missing).
func infoInt(ctx context.Context, rdb redis.UniversalClient, section, name string) int64 {
	n, _ := strconv.ParseInt(infoField(ctx, rdb, section, name), 10, 64)
	return n
}

// commandsProcessed is Redis's total_commands_processed, which includes
// every command of a pipeline.
func commandsProcessed(ctx context.Context, rdb redis.UniversalClient) int64 {
	return infoInt(ctx, rdb, "stats", "total_commands_processed")
}

// usedMemory is Redis's used_memory in bytes.
func usedMemory(ctx context.Context, rdb redis.UniversalClient) int64 {
	return infoInt(ctx, rdb, "memory", "used_memory")
}
