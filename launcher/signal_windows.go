package launcher

import (
	"os"
	"syscall"
)

// childProcAttr has nothing to set on Windows.
func childProcAttr() *syscall.SysProcAttr { return nil }

// terminateGroup kills the process: Windows has no SIGTERM, so a cluster
// cannot save its sessions there and its shards identify again.
func terminateGroup(pid int) error { return killGroup(pid) }

// killGroup kills the process.
func killGroup(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
