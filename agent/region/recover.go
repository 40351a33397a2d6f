package region

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// Recover rewrites the Raft configuration stored in dataDir (the agent's data dir, as
// Config.DataDir) so that survivors are the only voters, after a region lost its quorum
// for good. It must run while the agent on this node is stopped, and with the same
// survivors list on every survivor. Every entry in the local log counts as committed
// (raft.RecoverCluster). When the agents restart, the survivors elect a leader and
// autopilot grows the voter set back to its target.
//
// region must match the region recorded in the data dir.
func Recover(dataDir, region string, survivors []raft.Server, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(survivors) == 0 {
		return errors.New("recover: name at least one surviving voter (--peer id=host:port)")
	}
	seen := map[raft.ServerID]bool{}
	for i, s := range survivors {
		if s.ID == "" || s.Address == "" {
			return fmt.Errorf("recover: peer %d: id and address are both required (--peer id=host:port)", i+1)
		}
		if seen[s.ID] {
			return fmt.Errorf("recover: peer id %q listed twice", s.ID)
		}
		seen[s.ID] = true
		survivors[i].Suffrage = raft.Voter
	}
	dir := filepath.Join(dataDir, "raft")
	if err := checkRegionMarker(dir, region, false); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if err := checkNotRunning(dir); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	st, err := openStores(dir, region, false, log)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	defer st.close()
	has, err := raft.HasExistingState(st.logs, st.stable, st.snaps)
	if err != nil {
		return fmt.Errorf("recover: read raft state: %w", err)
	}
	if !has {
		return fmt.Errorf("recover: %s holds no raft state: nothing to recover (is --data-dir right?)", dir)
	}
	rc := raftConfig(string(survivors[0].ID), DefaultTiming(), log)
	_, trans := raft.NewInmemTransport("recover")
	defer trans.Close()
	if err := raft.RecoverCluster(rc, NewFSM(), st.logs, st.stable, st.snaps, trans, raft.Configuration{Servers: survivors}); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	return nil
}

// LastConfiguration reads the latest Raft configuration stored in dataDir (offline, the
// agent stopped): what `murmur operator recover` shows before anything is changed.
func LastConfiguration(dataDir, region string, log *slog.Logger) ([]raft.Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(dataDir, "raft")
	if err := checkRegionMarker(dir, region, false); err != nil {
		return nil, err
	}
	if err := checkNotRunning(dir); err != nil {
		return nil, err
	}
	st, err := openStores(dir, region, false, log)
	if err != nil {
		return nil, err
	}
	defer st.close()
	rc := raftConfig("offline-reader", DefaultTiming(), log)
	_, trans := raft.NewInmemTransport("offline")
	defer trans.Close()
	c, err := raft.GetConfiguration(rc, NewFSM(), st.logs, st.stable, st.snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	return c.Servers, nil
}
