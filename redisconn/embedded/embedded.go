// Package embedded starts an in-process Redis (miniredis) for demos and
// single-machine trials. It is a package of its own so that programs that
// only connect to a Redis (megane-cli, clusters, services) do not link
// miniredis through redisconn.
package embedded

import (
	"fmt"

	"github.com/alicebob/miniredis/v2"
)

// Server is an in-process Redis listening on loopback. It keeps everything
// in memory and dies with the process that started it.
type Server struct {
	srv *miniredis.Miniredis
}

// Start starts an embedded Redis on 127.0.0.1 at a free port. The caller
// stops it with Close.
func Start() (*Server, error) {
	s := miniredis.NewMiniRedis()
	if err := s.Start(); err != nil {
		return nil, fmt.Errorf("redisconn/embedded: start embedded redis: %w", err)
	}
	return &Server{srv: s}, nil
}

// Addr returns host:port of the embedded server.
func (s *Server) Addr() string { return s.srv.Addr() }

// URL returns the redis:// URL of the embedded server, for redisconn.Open.
func (s *Server) URL() string { return "redis://" + s.srv.Addr() }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }
