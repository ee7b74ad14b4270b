package cache

import (
	"context"
	"fmt"
	"sync"
)

// OwnerSource looks up what the projection cannot answer, in the process
// that owns the guild (typically through disgo's in-memory cache, else its
// REST client). It returns the entity as Discord's JSON object, as the REST
// API sends it or as json.Marshal writes a disgo value, and an error wrapping
// ErrNotFound when there is no such entity. kind is an Entity or a kind the
// user registered on an OwnerMux; guild is 0 when unknown.
type OwnerSource interface {
	Lookup(ctx context.Context, kind Entity, guild, id uint64) ([]byte, error)
}

// OwnerSourceFunc adapts a function to OwnerSource.
type OwnerSourceFunc func(ctx context.Context, kind Entity, guild, id uint64) ([]byte, error)

// Lookup calls f.
func (f OwnerSourceFunc) Lookup(ctx context.Context, kind Entity, guild, id uint64) ([]byte, error) {
	return f(ctx, kind, guild, id)
}

// OwnerMux routes lookups by kind, so user code can serve kinds of its own
// ("ban", "voice_state", ...) next to the built-in ones.
type OwnerMux struct {
	mu       sync.RWMutex
	kinds    map[Entity]OwnerSource
	fallback OwnerSource
}

var _ SourcedOwnerSource = (*OwnerMux)(nil)

// NewOwnerMux returns a mux that sends kinds without a handler to fallback
// (nil: ErrNotFound).
func NewOwnerMux(fallback OwnerSource) *OwnerMux {
	return &OwnerMux{kinds: map[Entity]OwnerSource{}, fallback: fallback}
}

// Handle registers src for kind, replacing an earlier one.
func (m *OwnerMux) Handle(kind Entity, src OwnerSource) {
	m.mu.Lock()
	m.kinds[kind] = src
	m.mu.Unlock()
}

// Lookup calls the source registered for kind.
func (m *OwnerMux) Lookup(ctx context.Context, kind Entity, guild, id uint64) ([]byte, error) {
	b, _, err := m.LookupSource(ctx, kind, guild, id)
	return b, err
}

// LookupSource calls the source registered for kind, and reports where its
// answer came from (SourceOwner when that source does not tell).
func (m *OwnerMux) LookupSource(ctx context.Context, kind Entity, guild, id uint64) ([]byte, Source, error) {
	m.mu.RLock()
	src := m.kinds[kind]
	m.mu.RUnlock()
	if src == nil {
		src = m.fallback
	}
	if src == nil {
		return nil, "", fmt.Errorf("cache: no lookup for kind %q: %w", kind, ErrNotFound)
	}
	return lookupSource(ctx, src, kind, guild, id)
}
