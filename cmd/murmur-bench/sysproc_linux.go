package main

import "syscall"

// childAttr makes the kernel SIGKILL a child when the bench process dies, so no agent
// outlives the tool even if the tool itself is SIGKILLed.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
