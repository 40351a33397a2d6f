package runtime

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"time"
)

// Health probe defaults.
const (
	defaultHealthInterval  = 5 * time.Second
	defaultHealthTimeout   = 2 * time.Second
	defaultHealthThreshold = 3
)

func healthDefaults(h HealthSpec) HealthSpec {
	if h.Interval <= 0 {
		h.Interval = defaultHealthInterval
	}
	if h.Timeout <= 0 {
		h.Timeout = defaultHealthTimeout
	}
	if h.FailureThreshold <= 0 {
		h.FailureThreshold = defaultHealthThreshold
	}
	return h
}

// probe runs one health check of h against the instance behind handle. A
// nil error is healthy.
func probe(ctx context.Context, hc *http.Client, drv Driver, handle Handle, h HealthSpec) error {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	switch {
	case h.HTTP != "":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.HTTP, nil)
		if err != nil {
			return fmt.Errorf("health http: %w", err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("health http: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("health http: %s answered %d", h.HTTP, resp.StatusCode)
		}
		return nil
	case h.TCP != "":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", h.TCP)
		if err != nil {
			return fmt.Errorf("health tcp: %w", err)
		}
		c.Close()
		return nil
	case len(h.Exec) > 0:
		if ie, ok := drv.(InContainerExecer); ok {
			code, err := ie.ExecIn(ctx, handle, h.Exec)
			if err != nil {
				return fmt.Errorf("health exec: %w", err)
			}
			if code != 0 {
				return fmt.Errorf("health exec: %v exited %d", h.Exec, code)
			}
			return nil
		}
		cmd := exec.CommandContext(ctx, h.Exec[0], h.Exec[1:]...)
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("health exec: %v: %w", h.Exec, err)
		}
		return nil
	}
	return nil
}
