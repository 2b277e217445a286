package wasmhost

import (
	"bytes"
	"context"
	"log/slog"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
)

// slogLevel maps proxy-wasm levels onto slog's.
func slogLevel(l abi.LogLevel) slog.Level {
	switch l {
	case abi.LogTrace:
		return slog.LevelDebug - 4
	case abi.LogDebug:
		return slog.LevelDebug
	case abi.LogInfo:
		return slog.LevelInfo
	case abi.LogWarn:
		return slog.LevelWarn
	case abi.LogError:
		return slog.LevelError
	default:
		return slog.LevelError + 4
	}
}

// LogLevelNames are the names PoolConfig.LogLevel accepts.
var LogLevelNames = map[string]uint32{"trace": 0, "debug": 1, "info": 2, "warn": 3, "error": 4, "critical": 5}

func (p *Pool) guestLog(in *instance, l abi.LogLevel, msg string) {
	if l < abi.LogLevel(p.cfg.LogLevel) {
		return
	}
	if h := p.cfg.OnLog; h != nil {
		h(uint32(l), msg)
	}
	p.log.LogAttrs(context.Background(), slogLevel(l), msg, slog.Uint64("vm", in.id), slog.String("source", "filter"))
}

// proxy_log(level, msg_ptr, msg_size): messages below the pool's level
// are dropped here, since the SDK does not ask for the level first.
func hostLog(_ context.Context, in *instance, s []uint64) abi.Status {
	l := abi.LogLevel(uint32(s[0]))
	if l > abi.LogCritical {
		return abi.StatusBadArgument
	}
	msg, ok := in.str(uint32(s[1]), uint32(s[2]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	in.pool.guestLog(in, l, msg)
	return abi.StatusOK
}

// proxy_get_log_level(level_ptr).
func hostGetLogLevel(_ context.Context, in *instance, s []uint64) abi.Status {
	if !in.mem.WriteUint32Le(uint32(s[0]), in.pool.cfg.LogLevel) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}

// logWriter turns the guest's stdout/stderr (fd_write) into log records,
// one per line, as Envoy does.
type logWriter struct {
	p     *Pool
	in    *instance
	level abi.LogLevel
	buf   []byte
}

// maxLogLine bounds a line kept while waiting for its newline.
const maxLogLine = 16 << 10

func (w *logWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.p.guestLog(w.in, w.level, string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLogLine {
		w.p.guestLog(w.in, w.level, string(w.buf))
		w.buf = w.buf[:0]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(b), nil
}
