package cache

import (
	"strconv"
	"strings"
)

// FeatureNames is the bit table of the compact "features" field of a guild
// hash: bit i set means FeatureNames[i] is present. The value is the bitmask
// in decimal, followed by ",NAME" for each feature missing from the table,
// e.g. "8193" or "8193,NEW_THING". A guild's feature list easily passes 64
// bytes as names, which would push its hash out of the listpack encoding;
// as a bitmask it is a few digits.
//
// The table is append-only: the index of a name is part of the stored format.
var FeatureNames = [...]string{
	"ANIMATED_BANNER", "ANIMATED_ICON", "APPLICATION_COMMAND_PERMISSIONS_V2",
	"AUTO_MODERATION", "BANNER", "COMMUNITY", "CREATOR_MONETIZABLE_PROVISIONAL",
	"CREATOR_STORE_PAGE", "DEVELOPER_SUPPORT_SERVER", "DISCOVERABLE", "FEATURABLE",
	"INVITES_DISABLED", "INVITE_SPLASH", "MEMBER_VERIFICATION_GATE_ENABLED",
	"MORE_SOUNDBOARD", "MORE_STICKERS", "NEWS", "PARTNERED", "PREVIEW_ENABLED",
	"RAID_ALERTS_DISABLED", "ROLE_ICONS", "ROLE_SUBSCRIPTIONS_AVAILABLE_FOR_PURCHASE",
	"ROLE_SUBSCRIPTIONS_ENABLED", "SOUNDBOARD", "TICKETED_EVENTS_ENABLED",
	"VANITY_URL", "VERIFIED", "VIP_REGIONS", "WELCOME_SCREEN_ENABLED",
	"GUESTS_ENABLED", "GUILD_TAGS", "ENHANCED_ROLE_COLORS", "PRIVATE_THREADS",
	"THREADS_ENABLED", "NEW_THREAD_PERMISSIONS", "CHANNEL_ICON_EMOJIS_GENERATED",
	"SEVEN_DAY_THREAD_ARCHIVE", "THREE_DAY_THREAD_ARCHIVE", "HUB", "LINKED_TO_HUB",
	"MONETIZATION_ENABLED", "TEXT_IN_VOICE_ENABLED", "MEMBER_PROFILES",
	"EXPOSED_TO_ACTIVITIES_WTP_EXPERIMENT", "SOUNDBOARD_ENABLED",
}

var featureBit = func() map[string]uint64 {
	m := make(map[string]uint64, len(FeatureNames))
	for i, n := range FeatureNames {
		m[n] = 1 << uint(i)
	}
	return m
}()

// encodeFeatures turns the JSON array arr into the compact form; the unknown
// names are cut at a comma so that the value stays within maxLen.
func encodeFeatures(arr []byte, maxLen int) (string, bool) {
	var mask uint64
	var extra []string
	err := eachElem(arr, func(e []byte) error {
		s, ok := text(e)
		if !ok {
			return nil
		}
		if b, ok := featureBit[s]; ok {
			mask |= b
		} else {
			extra = append(extra, s)
		}
		return nil
	})
	if err != nil {
		return "", false
	}
	out := strconv.FormatUint(mask, 10)
	for _, x := range extra {
		if maxLen >= 0 && len(out)+1+len(x) > maxLen {
			break
		}
		out += "," + x
	}
	return out, true
}

// DecodeFeatures turns a stored "features" value back into feature names.
func DecodeFeatures(v string) []string {
	if v == "" {
		return nil
	}
	head, tail, _ := strings.Cut(v, ",")
	mask, err := strconv.ParseUint(head, 10, 64)
	if err != nil {
		return strings.Split(v, ",")
	}
	var out []string
	for i, n := range FeatureNames {
		if mask&(1<<uint(i)) != 0 {
			out = append(out, n)
		}
	}
	if tail != "" {
		out = append(out, strings.Split(tail, ",")...)
	}
	return out
}
