package launcher

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/megane-go/megane/shardmap"
)

// setExe makes p's next spawns start exe; "" goes back to the configured
// binary.
func (p *proc) setExe(exe string) {
	p.mu.Lock()
	p.exeOver = exe
	p.mu.Unlock()
}

// readyLine is what a child writes on its ready pipe once it is ready.
const readyLine = "ready"

// childReadyFD is the descriptor of the ready pipe in a child: the first of
// cmd.ExtraFiles.
const childReadyFD = 3

// child is one running child process.
type child struct {
	cmd    *exec.Cmd
	pid    int
	ready  chan struct{} // closed when the child reported ready
	exited chan struct{} // closed once the process is reaped
	err    error         // Wait's result, set before exited is closed

	signalMu sync.Mutex
}

// spawn starts a child for p: the launcher's own executable and arguments,
// with the role and the launcher's decisions in the environment, its own
// process group (so a terminal's Ctrl-C reaches only the launcher, which
// stops the children in order), and a pipe on fd 3 for the ready report.
func (l *Launcher) spawn(p *proc) (*child, error) {
	exe := l.exe
	p.mu.Lock()
	if p.exeOver != "" {
		exe = p.exeOver
	}
	p.mu.Unlock()
	c, err := startChild(exe, l.childEnv(p))
	if err != nil {
		return nil, err
	}

	p.mu.Lock()
	p.gen++
	p.pid, p.startedAt, p.readyAt, p.state = c.pid, time.Now(), time.Time{}, StateStarting
	p.killNow = c.kill
	p.mu.Unlock()
	select { // a stale report about the previous child must not kill this one
	case <-p.staleCh:
	default:
	}
	p.recordState()
	l.log.Info("spawned "+p.name(), append(p.logAttrs(), slog.Int("pid", c.pid))...)
	p.event(evSpawned, "pid "+strconv.Itoa(c.pid))
	return c, nil
}

// startChild runs exe with the launcher's arguments and env added to its
// environment, in its own process group, with a pipe on fd 3 for the ready
// report.
func startChild(exe string, env []string) (*child, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("ready pipe: %w", err)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = childProcAttr()
	err = cmd.Start()
	_ = w.Close() // the child holds the only write end now
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	c := &child{cmd: cmd, pid: cmd.Process.Pid, ready: make(chan struct{}), exited: make(chan struct{})}
	go c.readReady(r)
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) readReady(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == readyLine {
			close(c.ready)
			// Keep reading so the child never blocks on a full pipe.
			for sc.Scan() {
			}
			return
		}
	}
}

// alive reports whether the process has not been reaped yet; signals go
// only to live children, so a recycled pid is never hit.
func (c *child) alive() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to the child's process group.
func (c *child) kill() {
	c.signalMu.Lock()
	defer c.signalMu.Unlock()
	if c.alive() {
		_ = killGroup(c.pid)
	}
}

// stop asks the child to exit (SIGTERM, so clusters save their sessions),
// waits up to timeout, then kills it.
func (c *child) stop(timeout time.Duration, log *slog.Logger) {
	c.signalMu.Lock()
	if c.alive() {
		_ = terminateGroup(c.pid)
	}
	c.signalMu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.exited:
		return
	case <-t.C:
	}
	log.Warn("child did not exit in time: killing it", slog.Int("pid", c.pid), slog.Duration("timeout", timeout))
	c.kill()
	<-c.exited
}

// exitCode is the child's exit status, or -1 while it runs or when a
// signal ended it.
func (c *child) exitCode() int {
	if c.alive() {
		return -1
	}
	if c.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// describeExit says how the child ended, for logs and event details.
func (c *child) describeExit() string {
	if c.alive() {
		return "running"
	}
	var ee *exec.ExitError
	switch {
	case c.err == nil:
		return "exit status 0"
	case errors.As(c.err, &ee):
		return ee.ProcessState.String()
	default:
		return c.err.Error()
	}
}

// childEnv is what a child of p needs to know beyond the user's own
// environment. Because it is appended after os.Environ, it wins.
func (l *Launcher) childEnv(p *proc) []string {
	cfg := &l.cfg
	env := []string{
		envToken + "=" + cfg.Token,
		envNamespace + "=" + cfg.Namespace,
		envShards + "=" + strconv.Itoa(l.shardCount),
		envClusters + "=" + strconv.Itoa(len(l.clusters)),
		envMaxConcurrency + "=" + strconv.Itoa(l.maxConcurrency),
		envRESTURL + "=" + cfg.RESTURL,
		envGatewayURL + "=" + cfg.GatewayURL,
		envHeartbeatInterval + "=" + cfg.HeartbeatInterval.String(),
		envIdentifyReserve + "=" + strconv.Itoa(cfg.IdentifyReserve),
		envShutdownTimeout + "=" + cfg.ShutdownTimeout.String(),
		envStatsInterval + "=" + cfg.StatsInterval.String(),
		envReadyFD + "=" + strconv.Itoa(childReadyFD),
		envParentPID + "=" + strconv.Itoa(os.Getpid()),
	}
	if cfg.IdentifyWindow > 0 {
		env = append(env, envIdentifyWindow+"="+cfg.IdentifyWindow.String())
	}
	if l.redisURL != "" {
		env = append(env, envRedisURL+"="+l.redisURL)
	}
	p.mu.Lock()
	token := p.token
	p.mu.Unlock()
	if token > 0 {
		env = append(env, envLeaseToken+"="+strconv.FormatUint(token, 10), envLeaseTTL+"="+cfg.LeaseTTL.String())
	}
	if p.kind == kindCluster {
		env = append(env,
			envRole+"="+string(RoleCluster),
			envClusterID+"="+strconv.Itoa(p.id),
			envClusterShards+"="+shardmap.FormatRanges(p.shards))
	} else {
		env = append(env,
			envRole+"="+string(RoleService),
			envService+"="+p.service,
			envServiceCopy+"="+strconv.Itoa(p.copy))
	}
	return env
}
