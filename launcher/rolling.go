package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/lifecycle"
)

// RollOptions shape a rolling restart (Roll).
type RollOptions struct {
	// Parallel is how many processes restart at once. Default 1: at most
	// one cluster is down at a time.
	Parallel int
	// SkipServices leaves the services running (by default they are
	// restarted after the clusters, one copy at a time).
	SkipServices bool
}

// RollReport is what a rolling restart did: every step, the totals and
// the launcher's status at the end.
type RollReport = control.RollingRestartReply

// RollStep is one step of a rolling restart.
type RollStep = control.RollStep

// RollingRestart restarts every cluster this launcher runs in turn, then
// the services (Roll with the default options), each once the previous one
// is ready again, its shards resumed.
func (l *Launcher) RollingRestart(ctx context.Context) error {
	_, err := l.Roll(ctx, RollOptions{})
	return err
}

// Roll restarts this launcher's clusters, then its services, Parallel at a
// time, each step once the previous one is ready again. The new processes
// start from Config.Binary (default: this program's path, resolved at every
// spawn), so a build replaced on disk is deployed this way. A process that
// fails to become ready stops the roll: it is started again from the
// launcher's own build (the image it runs, whatever the file on disk is
// now), and Roll returns the report so far with the error. Each step is
// published as a lifecycle.RollStep event.
func (l *Launcher) Roll(ctx context.Context, o RollOptions) (RollReport, error) {
	var rep RollReport
	if err := l.checkRunning(); err != nil {
		return rep, err
	}
	if !l.rolling.TryLock() {
		return rep, ErrBusy
	}
	defer l.rolling.Unlock()
	k := max(o.Parallel, 1)
	var procs []*proc
	for _, p := range l.clusters {
		if owned, _, _ := p.own.get(); owned {
			procs = append(procs, p)
		}
	}
	if !o.SkipServices {
		for _, p := range l.services {
			if owned, _, _ := p.own.get(); owned {
				procs = append(procs, p)
			}
		}
	}
	start := time.Now()
	l.log.Info("rolling restart", slog.Int("processes", len(procs)), slog.Int("parallel", k), slog.String("binary", l.exe))
	var failed error
	for i := 0; i < len(procs) && failed == nil; i += k {
		step, err := l.rollStep(ctx, procs[i:min(i+k, len(procs))])
		rep.Steps = append(rep.Steps, step)
		rep.Resumed += step.Resumed
		rep.Identified += step.Identified
		rep.Replayed += step.Replayed
		failed = err
	}
	rep.Took = time.Since(start)
	rep.Status, _ = l.Status()
	if failed != nil {
		return rep, fmt.Errorf("launcher: rolling restart stopped: %w", failed)
	}
	l.log.Info("rolling restart done", slog.Duration("took", rep.Took.Round(time.Millisecond)),
		slog.Int("resumed", rep.Resumed), slog.Int("identified", rep.Identified), slog.Int("replayed", rep.Replayed))
	return rep, nil
}

// rollStep restarts batch together and measures the step.
func (l *Launcher) rollStep(ctx context.Context, batch []*proc) (RollStep, error) {
	step := RollStep{}
	shards := 0
	for _, p := range batch {
		step.Processes = append(step.Processes, p.name())
		shards += len(p.shards)
	}
	from := l.lastEventID(ctx)
	// What each process runs now, kept to roll it back to.
	prev := make([]string, len(batch))
	for i, p := range batch {
		prev[i] = l.images.keep(p)
	}
	t0 := time.Now()
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	for i, p := range batch {
		p.setExe("") // a roll starts the configured binary
		wg.Go(func() { errs[i] = p.restart(ctx) })
	}
	wg.Wait()
	step.Duration = time.Since(t0)
	var failed []string
	for i, err := range errs {
		if err == nil {
			continue
		}
		p := batch[i]
		failed = append(failed, p.name()+": "+err.Error())
		if ctx.Err() != nil || errors.Is(err, ErrNotOwned) {
			continue
		}
		// The new build did not come up: back to the one it ran.
		l.log.Error("rolling restart: "+p.name()+" did not become ready; starting it again from the build it ran before",
			append(p.logAttrs(), slog.Any("error", err), slog.String("build", prev[i]))...)
		p.setExe(prev[i])
		if rerr := p.restart(ctx); rerr == nil {
			step.RolledBack = true
		} else {
			failed = append(failed, p.name()+" rollback: "+rerr.Error())
		}
	}
	l.countStep(ctx, &step, batch, from, shards)
	var err error
	if len(failed) > 0 {
		step.Error = strings.Join(failed, "; ")
		err = errors.New(step.Error)
	}
	l.sink.event(lifecycle.Event{Type: lifecycle.RollStep, Cluster: -1, Shard: -1, Detail: step.String()})
	return step, err
}

// images keeps copies of the programs children ran before a rolling
// restart replaced them, to roll back to: the file on disk may be the new
// build already, but the kernel keeps a running process's image, readable
// at /proc/<pid>/exe. One copy per distinct image.
type images struct {
	mu    sync.Mutex
	dir   string
	byIno map[uint64]string
}

// keep returns a path that starts what p runs now: a kept copy of its
// image, or, when p runs nothing or the copy fails, the launcher's own
// image.
func (im *images) keep(p *proc) string {
	const ownImage = "/proc/self/exe"
	p.mu.Lock()
	pid := p.pid
	p.mu.Unlock()
	if pid == 0 {
		return ownImage
	}
	src := "/proc/" + strconv.Itoa(pid) + "/exe"
	fi, err := os.Stat(src)
	if err != nil {
		return ownImage
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ownImage
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if path, ok := im.byIno[st.Ino]; ok {
		return path
	}
	if im.dir == "" {
		if im.dir, err = os.MkdirTemp("", "megane-builds-"); err != nil {
			return ownImage
		}
		im.byIno = map[uint64]string{}
	}
	path := filepath.Join(im.dir, "build-"+strconv.FormatUint(st.Ino, 10))
	if err := copyExecutable(src, path); err != nil {
		return ownImage
	}
	im.byIno[st.Ino] = path
	return path
}

// remove deletes the kept copies.
func (im *images) remove() {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.dir != "" {
		_ = os.RemoveAll(im.dir)
		im.dir, im.byIno = "", nil
	}
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// countStep counts the shard events of the step's clusters since from:
// resumes (with their replays) and identifies. The clusters publish them
// as they connect, so it waits a little for all of them.
func (l *Launcher) countStep(ctx context.Context, step *RollStep, batch []*proc, from string, shards int) {
	ids := map[int]bool{}
	for _, p := range batch {
		if p.kind == kindCluster {
			ids[p.id] = true
		}
	}
	if len(ids) == 0 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, _, err := lifecycle.Read(ctx, l.rdb, l.ks, from, 100_000)
		if err != nil {
			return
		}
		step.Resumed, step.Identified, step.Replayed = 0, 0, 0
		for _, ev := range evs {
			if !ids[ev.Cluster] {
				continue
			}
			switch ev.Type {
			case lifecycle.ShardResumed:
				step.Resumed++
				if n, ok := strings.CutPrefix(ev.Detail, "replayed "); ok {
					r, _ := strconv.Atoi(n)
					step.Replayed += r
				}
			case lifecycle.ShardReady:
				step.Identified++
			}
		}
		if step.Resumed+step.Identified >= shards || time.Now().After(deadline) || step.Error != "" {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}
