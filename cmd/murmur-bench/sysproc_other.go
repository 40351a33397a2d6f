//go:build !linux

package main

import "syscall"

// childAttr: without Linux's PR_SET_PDEATHSIG, children are only reaped by Close.
func childAttr() *syscall.SysProcAttr { return nil }
