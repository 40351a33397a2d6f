package gossip

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// Profiles name the failure-detection tunings murmur ships.
const (
	// ProfileLAN is the default: edge sites are LANs. A dead node is declared in about
	// 1-2 s on a small fleet (see BENCHMARKS.md) instead of memberlist's stock 5-8 s.
	ProfileLAN = "lan"
	// ProfileWAN is memberlist's WAN profile, for high-latency links (cellular,
	// satellite): slower detection, fewer false suspicions.
	ProfileWAN = "wan"
)

// MemberlistConfig returns the memberlist configuration of a profile.
//
// The LAN trade-off: a node is probed every 200 ms and must answer within 100 ms
// (directly, through 3 indirect probes, or over TCP); a node that fails is suspect
// for SuspicionMult * max(1, log10(n)) * ProbeInterval = 800 ms on fleets below
// 10 nodes once two other nodes confirm the suspicion (SuspicionMult - 2), and at most
// SuspicionMaxTimeoutMult times that (2.4 s) without confirmation. SuspicionMult 3
// needed only one confirmation and declared healthy nodes dead when two agents were
// starved of CPU for a few hundred ms (BENCHMARKS.md); 4 costs ~0.2 s of detection. Lifeguard stays on:
// a node that notices it is slow itself (missed acks, refutations) stretches its own
// probe timeouts up to AwarenessMaxMultiplier times, which is what keeps a busy node
// from accusing healthy peers, and the stall watch (stall.go) makes a node that was
// frozen refute its suspicion as soon as it runs again. The cost is more probe traffic (5 probes/s/node,
// ~100 bytes each) and less slack for links with RTTs above ~50 ms: use ProfileWAN
// for those.
func MemberlistConfig(profile string) (*memberlist.Config, error) {
	switch profile {
	case "", ProfileLAN:
		c := memberlist.DefaultLANConfig()
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.SuspicionMult = 4
		c.SuspicionMaxTimeoutMult = 3
		c.GossipInterval = 200 * time.Millisecond
		c.GossipNodes = 3
		c.RetransmitMult = 4
		c.PushPullInterval = 10 * time.Second
		c.TCPTimeout = 5 * time.Second // joins, push/pull, reliable sends (1 MiB is ~0.1 s on a LAN)
		c.GossipToTheDeadTime = 15 * time.Second
		c.DeadNodeReclaimTime = 10 * time.Second
		c.AwarenessMaxMultiplier = 8
		return c, nil
	case ProfileWAN:
		c := memberlist.DefaultWANConfig()
		c.DeadNodeReclaimTime = 30 * time.Second
		return c, nil
	default:
		return nil, fmt.Errorf("unknown gossip profile %q: use %q or %q", profile, ProfileLAN, ProfileWAN)
	}
}
