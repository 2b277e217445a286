// Package harness starts the real Aegis binaries for the end-to-end tests
// and the demo: it builds the CLI and the filter once, runs each component
// as its own process with its output captured to a log file, waits for it
// to report ready, and stops it gracefully (or kills it, to test crashes).
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries are the built artifacts a run uses.
type Binaries struct {
	Aegis  string // the aegis CLI
	Filter string // the filter .wasm
}

// RepoRoot finds the module root from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// Build compiles the CLI and the filter into outDir (once per process) with
// the same commands as the Makefile, so the tests exercise what ships.
func Build(ctx context.Context, outDir string) (Binaries, error) {
	buildOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		b := Binaries{Aegis: filepath.Join(outDir, "aegis"), Filter: filepath.Join(outDir, "aegis-filter.wasm")}
		steps := []struct {
			env  []string
			args []string
		}{
			{nil, []string{"build", "-trimpath", "-o", b.Aegis, "./cmd/aegis"}},
			{[]string{"GOOS=wasip1", "GOARCH=wasm"}, []string{"build", "-trimpath", "-ldflags=-s -w", "-buildmode=c-shared", "-o", b.Filter, "./filter"}},
		}
		for _, s := range steps {
			cmd := exec.CommandContext(ctx, goTool(), s.args...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), s.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(s.args, " "), err, out)
				return
			}
		}
		built = b
	})
	return built, buildErr
}

// goTool is the go command on PATH, or GOROOT/bin/go when tests run
// with a PATH that lacks it (go test sets GOROOT for the test binary).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// FreePort returns a loopback address with a port that was free a moment
// ago. Components that can report the port they bound are preferable; this
// is for the ones told where to listen.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Process is one running component.
type Process struct {
	Name    string
	Args    []string
	LogPath string

	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// Start runs bin with args, its stdout and stderr appended to logDir/name.log.
func Start(ctx context.Context, name, logDir, bin string, args []string, env []string) (*Process, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = append(os.Environ(), env...)
	// Its own process group, so a test that is interrupted does not leave
	// children behind and a kill reaches only this component.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Args: args, LogPath: logPath, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop asks the process to shut down (SIGTERM) and waits up to timeout,
// then kills it. It returns the log tail when the exit was not clean.
func (p *Process) Stop(timeout time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil && !isSignalExit(p.err) {
			return fmt.Errorf("%s exited: %v\n%s", p.Name, p.err, p.Tail(20))
		}
		return nil
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %s; killed\n%s", p.Name, timeout, p.Tail(20))
	}
}

// Kill ends the process at once (SIGKILL), like a crash.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func isSignalExit(err error) bool {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return true
		}
	}
	return false
}

// Tail returns the last n lines of the process log.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// WaitHTTP polls url until it answers 200 or timeout passes, failing early
// if the process exits.
func (p *Process) WaitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	var last error
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited before ready: %v\n%s", p.Name, p.err, p.Tail(30))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("status %d", resp.StatusCode)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready at %s within %s: %v\n%s", p.Name, url, timeout, last, p.Tail(30))
}
