package testredis

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
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testcerts"
)

// ServerOptions shapes a redis-server of a test's own.
type ServerOptions struct {
	// TLS, when set, makes the server speak TLS only (no plain port) with
	// the server certificate of these files, trusting their CA for client
	// certificates.
	TLS *testcerts.Files
	// TLSAuthClients makes the server refuse TLS clients without a
	// certificate signed by the CA. Off: client certificates are optional.
	TLSAuthClients bool
	// ACLFile is given to the server as --aclfile.
	ACLFile string
	// Args are further redis-server arguments.
	Args []string

	// cluster picks a port a cluster node can use: its bus port
	// (port+10000) free too, so at most 55535.
	cluster bool
}

// Server is a running redis-server of a test, also for tests that break
// Redis (CONFIG SET maxmemory, FLUSHALL, a restart) without disturbing the
// server other tests share. It runs without persistence, so a Restart
// comes back empty.
type Server struct {
	// Addr is 127.0.0.1:port.
	Addr string
	// Log is the server's log file.
	Log string

	t      testing.TB
	bin    string
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartServer runs a redis-server on a free loopback port for the test and
// stops it when the test ends. It skips the test when redis-server is not
// installed (scripts/test installs it), and fails it when the server does
// not come up within 10 s.
func StartServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("SKIPPED: redis-server is not installed (scripts/test installs the Debian package)")
	}
	dir := t.TempDir()
	var lastErr error
	// A free port can be taken by another process before the server binds
	// it; then the server exits and another port is tried.
	for attempt := range 5 {
		port, err := freePort()
		if o.cluster {
			port, err = freeClusterPort()
		}
		if err != nil {
			t.Fatalf("testredis: free port: %v", err)
		}
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Log: filepath.Join(dir, fmt.Sprintf("redis-%d.log", attempt))}
		args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
			"--daemonize", "no", "--loglevel", "notice", "--logfile", s.Log}
		if o.TLS != nil {
			auth := "optional"
			if o.TLSAuthClients {
				auth = "yes"
			}
			args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port),
				"--tls-cert-file", o.TLS.ServerCert, "--tls-key-file", o.TLS.ServerKey,
				"--tls-ca-cert-file", o.TLS.CA, "--tls-auth-clients", auth)
		} else {
			args = append(args, "--port", strconv.Itoa(port))
		}
		if o.ACLFile != "" {
			args = append(args, "--aclfile", o.ACLFile)
		}
		args = append(args, o.Args...)
		s.t, s.bin, s.args = t, bin, args
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(func() {
				s.Stop()
				if t.Failed() {
					t.Logf("--- redis-server %s log ---\n%s", s.Addr, tail(s.Log, 4000))
				}
			})
			return s
		}
		lastErr = fmt.Errorf("%w; log:\n%s", lastErr, tail(s.Log, 2000))
		if !strings.Contains(lastErr.Error(), "Address already in use") {
			break
		}
	}
	t.Fatalf("testredis: redis-server did not start: %v", lastErr)
	return nil
}

func (s *Server) start() error {
	cmd := exec.Command(s.bin, s.args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := waitListening(s.Addr, exited, 10*time.Second); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return err
	}
	s.cmd, s.exited = cmd, exited
	return nil
}

// URL is the server's redis:// URL (no TLS).
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a client of the server (no TLS), closed when the test
// ends.
func (s *Server) Client() redis.UniversalClient {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart stops the server and starts an empty one on the same port, as a
// Redis without persistence comes back from a crash. It waits until the
// new server answers PING. Only for servers without TLS.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("testredis: restart: %v; log:\n%s", err, tail(s.Log, 2000))
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("testredis: restarted server does not answer PING: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeClusterPort returns a free port of at most 55535 whose cluster bus
// port (10000 higher) is free too.
func freeClusterPort() (int, error) {
	for range 100 {
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		if port > 55535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		_ = bus.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair for a cluster node")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts TCP connections, the process
// exits or d passes.
func waitListening(addr string, exited <-chan struct{}, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("redis-server exited")
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server not listening on %s after %s", addr, d)
		}
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
