//go:build unix

package launcher

import "syscall"

// terminateGroup asks the process group of pid to exit. SIGCONT follows so
// that a stopped process handles the SIGTERM instead of waiting for the kill.
func terminateGroup(pid int) error {
	err := syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(-pid, syscall.SIGCONT)
	return err
}

// killGroup kills the process group of pid, including anything the child
// started itself.
func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }
