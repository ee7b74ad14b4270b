package cache

import (
	"context"
	"fmt"
)

func (f *Fetcher) one(ctx context.Context, kind Entity, guild, id uint64, opts []FetchOption) (map[string]string, error) {
	got, err := f.Fetch(ctx, kind, guild, []uint64{id}, opts...)
	if m := got[id]; m != nil {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("cache: fetch %s %d: %w", kind, id, ErrNotFound)
}

// FetchGuild returns guild id.
func (f *Fetcher) FetchGuild(ctx context.Context, id uint64, opts ...FetchOption) (Guild, error) {
	m, err := f.one(ctx, EntityGuild, 0, id, opts)
	if err != nil {
		return Guild{}, err
	}
	return guildFrom(id, m), nil
}

// FetchChannel returns channel id.
func (f *Fetcher) FetchChannel(ctx context.Context, id uint64, opts ...FetchOption) (Channel, error) {
	m, err := f.one(ctx, EntityChannel, 0, id, opts)
	if err != nil {
		return Channel{}, err
	}
	return channelFrom(id, m), nil
}

// FetchUser returns user id.
func (f *Fetcher) FetchUser(ctx context.Context, id uint64, opts ...FetchOption) (User, error) {
	m, err := f.one(ctx, EntityUser, 0, id, opts)
	if err != nil {
		return User{}, err
	}
	return userFrom(id, m), nil
}

// FetchMember returns user's membership of guild.
func (f *Fetcher) FetchMember(ctx context.Context, guild, user uint64, opts ...FetchOption) (Member, error) {
	m, err := f.one(ctx, EntityMember, guild, user, opts)
	if err != nil {
		return Member{}, err
	}
	return memberFrom(guild, user, m), nil
}

// FetchGuilds returns the guilds of ids that exist, keyed by id. On owner
// failures it returns what it got and the joined errors.
func (f *Fetcher) FetchGuilds(ctx context.Context, ids []uint64, opts ...FetchOption) (map[uint64]Guild, error) {
	got, err := f.Fetch(ctx, EntityGuild, 0, ids, opts...)
	out := make(map[uint64]Guild, len(got))
	for id, m := range got {
		out[id] = guildFrom(id, m)
	}
	return out, err
}

// FetchChannels returns the channels of ids that exist, keyed by id.
func (f *Fetcher) FetchChannels(ctx context.Context, ids []uint64, opts ...FetchOption) (map[uint64]Channel, error) {
	got, err := f.Fetch(ctx, EntityChannel, 0, ids, opts...)
	out := make(map[uint64]Channel, len(got))
	for id, m := range got {
		out[id] = channelFrom(id, m)
	}
	return out, err
}

// FetchUsers returns the users of ids that exist, keyed by id.
func (f *Fetcher) FetchUsers(ctx context.Context, ids []uint64, opts ...FetchOption) (map[uint64]User, error) {
	got, err := f.Fetch(ctx, EntityUser, 0, ids, opts...)
	out := make(map[uint64]User, len(got))
	for id, m := range got {
		out[id] = userFrom(id, m)
	}
	return out, err
}
