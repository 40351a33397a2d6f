package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/murmur-edge/murmur/agent/secure"
	"github.com/murmur-edge/murmur/gossip"
)

// How often the TLS files are checked for changes, and how often an --insecure agent
// says so in its log.
const (
	tlsPollInterval      = 10 * time.Second
	insecureWarnInterval = time.Minute
)

// SecurityJSON is the "security" object of GET /v1/status.
type SecurityJSON struct {
	// Mode authenticates agent-to-agent connections: tls, key (gossip-key
	// challenge-response) or none.
	Mode string `json:"mode"`
	// Insecure is true when the agent is reachable beyond loopback without gossip
	// encryption or without TLS, because --insecure said so.
	Insecure bool `json:"insecure"`
	// GossipEncrypted is true when gossip packets are encrypted with the gossip key.
	GossipEncrypted bool       `json:"gossip_encrypted"`
	TLSNotAfter     *time.Time `json:"tls_not_after,omitempty"`
	TLSError        string     `json:"tls_reload_error,omitempty"`
}

// checkSecureDefaults refuses an agent reachable beyond loopback (gossip or Raft) that
// lacks gossip encryption (encrypted: --encrypt or a keyring in the data dir) or TLS,
// unless cfg.Insecure. hosts are the addresses the agent binds and advertises; an empty
// host (":7946") listens on every interface and counts as exposed. It reports whether
// the agent runs exposed without one of the two because of --insecure.
func checkSecureDefaults(cfg Config, encrypted bool, hosts ...string) (insecure bool, err error) {
	exposed := ""
	for _, h := range hosts {
		if h == "localhost" {
			continue
		}
		if ip := net.ParseIP(h); h == "" || ip == nil || !ip.IsLoopback() {
			exposed = h
			if h == "" {
				exposed = "every interface"
			}
			break
		}
	}
	if exposed == "" {
		return false, nil
	}
	var missing []string
	if !encrypted {
		missing = append(missing, "--encrypt (a gossip key: 'murmur keygen')")
	}
	if !cfg.TLS.Set() {
		missing = append(missing, "--tls-ca, --tls-cert and --tls-key ('murmur tls ca create', 'murmur tls cert create')")
	}
	if len(missing) == 0 {
		return false, nil
	}
	if cfg.Insecure {
		return true, nil
	}
	msg := fmt.Sprintf("gossip or Raft is reachable beyond loopback (%s) and agents would trust any packet: give %s", exposed, missing[0])
	if len(missing) > 1 {
		msg += " and " + missing[1]
	}
	return false, &FieldError{"insecure", errors.New(msg + ", or --insecure to run unauthenticated on a trusted network (see docs/security.md)")}
}

// setupSecurity loads the TLS files and builds the authenticator whose channels guard
// gossip streams and the Raft port. Called by New before gossip and region exist; the
// key source reads the gossip keyring once gossip is built.
func (a *Agent) setupSecurity() error {
	if a.cfg.TLS.Set() {
		src, err := secure.LoadTLS(a.cfg.TLS, secure.Identity{Node: a.cfg.Name, Region: a.cfg.Region})
		if err != nil {
			return &FieldError{"tls-cert", err}
		}
		a.tls = src
	}
	auth, err := secure.New(secure.Config{
		TLS: a.tls,
		Keys: func() [][]byte {
			if a.gossip == nil { // set once in New, before anything dials
				return nil
			}
			return a.gossip.Keys()
		},
		Logger: a.log, Registerer: a.reg,
	})
	if err != nil {
		return err
	}
	a.auth = auth
	a.tlsReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "murmur_tls_reloads_total",
		Help: "Reloads of the TLS certificate, key and CA from disk (SIGHUP or a file change), by result."}, []string{"result"})
	insecure := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "murmur_insecure",
		Help: "1 when the agent is reachable beyond loopback without gossip encryption or TLS because of --insecure."},
		func() float64 { return b2f(a.insecure) })
	expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "murmur_tls_cert_not_after_seconds",
		Help: "Expiry of this node's TLS certificate (Unix seconds; 0 without TLS)."},
		func() float64 {
			if a.tls == nil {
				return 0
			}
			return float64(a.tls.NotAfter().Unix())
		})
	for _, c := range []prometheus.Collector{a.tlsReloads, insecure, expiry} {
		if err := a.reg.Register(c); err != nil {
			return fmt.Errorf("register security metrics: %w", err)
		}
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// gossipAuth is the channel of gossip's TCP streams: any node certified by the fleet
// CA (joins come from nodes nobody knows yet) whose certificate's region is the one it
// gossips. A dialer also checks that the certificate names the node it meant to reach.
func (a *Agent) gossipAuth() gossip.StreamAuth {
	return a.auth.Channel("gossip", "gossip", func(id secure.Identity) error {
		// A member gossiping another region than its certificate names would be
		// placed work by that region's coordinator: its streams are refused.
		for _, m := range a.gossip.Members() {
			if m.Name == id.Node && m.Region != id.Region {
				return fmt.Errorf("member %s gossips region %s, its certificate names region %s", m.Name, m.Region, id.Region)
			}
		}
		return nil
	})
}

// raftAuth is the channel of this node's Raft port, which serves its own region's
// group and the witness groups it runs for other regions: with TLS, a certificate
// naming a node the fleet view lists in the region the certificate names. Which
// group a peer may then speak to is the group's decision (region.Node admits: its
// own region, and the witnesses in its configuration).
func (a *Agent) raftAuth() *secure.Channel {
	return a.auth.Channel("raft", "raft", func(id secure.Identity) error {
		for _, m := range a.gossip.Members() {
			if m.Name == id.Node {
				if m.Region != id.Region {
					return fmt.Errorf("member %s gossips region %s, its certificate names region %s", m.Name, m.Region, id.Region)
				}
				return nil
			}
		}
		return fmt.Errorf("%s is not a member of the fleet view", id.Node)
	})
}

// ReloadTLS reads the TLS files again (cmd/murmur calls it on SIGHUP). On error the
// certificate in use stays. Connections already open keep their session; new ones use
// the new certificate and CA.
func (a *Agent) ReloadTLS() error {
	if a.tls == nil {
		return errors.New("no TLS configured (--tls-ca, --tls-cert, --tls-key)")
	}
	if err := a.tls.Reload(); err != nil {
		a.tlsReloads.WithLabelValues("failed").Inc()
		a.tlsErr.Store(err.Error())
		a.log.Error("TLS reload failed; the previous certificate stays in use", "err", err)
		return err
	}
	if err := a.auth.ResetSessions(); err != nil {
		a.log.Warn("TLS sessions not reset after the reload; resumed connections keep the old certificates", "err", err)
	}
	a.tlsReloads.WithLabelValues("ok").Inc()
	a.tlsErr.Store("")
	a.log.Info("TLS certificate reloaded", "node", a.tls.Identity().Node, "not_after", a.tls.NotAfter())
	return nil
}

// securityLoop reloads the TLS files when they change on disk and, with --insecure,
// warns once a minute. It returns when ctx is cancelled.
func (a *Agent) securityLoop(ctx context.Context) {
	if a.tls == nil && !a.insecure {
		return
	}
	a.warnInsecure()
	poll := a.clock.NewTimer(tlsPollInterval)
	warn := a.clock.NewTimer(insecureWarnInterval)
	defer func() { poll.Stop(); warn.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C():
			if a.tls != nil && a.tls.Changed() {
				_ = a.ReloadTLS()
			}
			poll = a.clock.NewTimer(tlsPollInterval)
		case <-warn.C():
			a.warnInsecure()
			warn = a.clock.NewTimer(insecureWarnInterval)
		}
	}
}

func (a *Agent) warnInsecure() {
	if a.insecure {
		a.log.Warn("running with --insecure: gossip, Raft and agent streams are not authenticated; anyone on the network can join the fleet and append to the region's log (see docs/security.md)",
			"gossip_encrypted", a.keyring != nil, "tls", a.tls != nil)
	}
}

func (a *Agent) securityStatus() SecurityJSON {
	s := SecurityJSON{Mode: string(a.auth.Mode()), Insecure: a.insecure, GossipEncrypted: len(a.gossip.Keys()) > 0}
	if a.tls != nil {
		t := a.tls.NotAfter()
		s.TLSNotAfter = &t
		s.TLSError, _ = a.tlsErr.Load().(string)
	}
	return s
}
