package launcher

import "syscall"

// childProcAttr puts a child in its own process group and has the kernel
// send it SIGTERM when the launcher dies, however it dies: the child then
// saves its sessions and exits instead of living on as an orphan.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
