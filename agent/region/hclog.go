package region

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogBridge is the hclog.Logger Raft wants, writing to our slog.Logger. Raft's Info
// chatter ("entering follower state") is logged at slog Debug; Warn and Error stay.
type hclogBridge struct {
	l    *slog.Logger
	name string
	args []any
}

var _ hclog.Logger = (*hclogBridge)(nil)

func newHclog(l *slog.Logger, name string) hclog.Logger {
	return &hclogBridge{l: l, name: name}
}

func (b *hclogBridge) level(lv hclog.Level) slog.Level {
	switch lv {
	case hclog.Trace, hclog.Debug, hclog.Info:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (b *hclogBridge) Log(lv hclog.Level, msg string, args ...any) {
	sl := b.level(lv)
	ctx := context.Background()
	if !b.l.Enabled(ctx, sl) {
		return
	}
	all := make([]any, 0, len(b.args)+len(args)+2)
	all = append(all, "component", b.name)
	all = append(all, b.args...)
	for i := 0; i < len(args); i++ {
		// hclog allows trailing lone values and error values; slog wants key/value pairs.
		if i+1 < len(args) {
			if k, ok := args[i].(string); ok {
				all = append(all, k, args[i+1])
				i++
				continue
			}
		}
		all = append(all, "arg", args[i])
	}
	b.l.Log(ctx, sl, msg, all...)
}

func (b *hclogBridge) Trace(msg string, args ...any) { b.Log(hclog.Trace, msg, args...) }
func (b *hclogBridge) Debug(msg string, args ...any) { b.Log(hclog.Debug, msg, args...) }
func (b *hclogBridge) Info(msg string, args ...any)  { b.Log(hclog.Info, msg, args...) }
func (b *hclogBridge) Warn(msg string, args ...any)  { b.Log(hclog.Warn, msg, args...) }
func (b *hclogBridge) Error(msg string, args ...any) { b.Log(hclog.Error, msg, args...) }

func (b *hclogBridge) enabled(lv hclog.Level) bool {
	return b.l.Enabled(context.Background(), b.level(lv))
}
func (b *hclogBridge) IsTrace() bool { return false }
func (b *hclogBridge) IsDebug() bool { return b.enabled(hclog.Debug) }
func (b *hclogBridge) IsInfo() bool  { return b.enabled(hclog.Info) }
func (b *hclogBridge) IsWarn() bool  { return b.enabled(hclog.Warn) }
func (b *hclogBridge) IsError() bool { return b.enabled(hclog.Error) }

func (b *hclogBridge) ImpliedArgs() []any { return b.args }

func (b *hclogBridge) With(args ...any) hclog.Logger {
	c := *b
	c.args = append(append([]any{}, b.args...), args...)
	return &c
}

func (b *hclogBridge) Name() string { return b.name }

func (b *hclogBridge) Named(name string) hclog.Logger {
	c := *b
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (b *hclogBridge) ResetNamed(name string) hclog.Logger {
	c := *b
	c.name = name
	return &c
}

// SetLevel is ignored: the slog handler decides.
func (b *hclogBridge) SetLevel(hclog.Level) {}

func (b *hclogBridge) GetLevel() hclog.Level {
	switch {
	case b.IsDebug():
		return hclog.Debug
	case b.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

func (b *hclogBridge) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(b.StandardWriter(opts), "", 0)
}

func (b *hclogBridge) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		b.Info(strings.TrimSpace(string(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
