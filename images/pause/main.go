// userstream-pause: the sandbox ("pause") process of every pod on the project's own cluster.
//
// It holds the pod's namespaces open and does nothing else: it sleeps, reaps children that are
// re-parented to it (it is PID 1 of the pod when the PID namespace is shared) and exits 0 on
// SIGTERM or SIGINT. Built static (CGO_ENABLED=0) by userstream.cluster.images.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
