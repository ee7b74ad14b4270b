//go:build unix && !linux

package launcher

import "syscall"

// childProcAttr puts a child in its own process group. Without Linux's
// Pdeathsig, a child notices the launcher's death by polling its parent pid.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
