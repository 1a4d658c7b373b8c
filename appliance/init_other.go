//go:build !linux

package appliance

import (
	"fmt"
	"os"
)

// runInit is Main as PID 1: only Linux appliances exist.
func runInit(svc Service) {
	fmt.Fprintln(os.Stderr, "nymote: the appliance runtime runs as PID 1 on Linux only")
	os.Exit(1)
}

// poweroffHelper is the name under which Main asks PID 1 to power off.
const poweroffHelper = "poweroff"

// runPoweroffHelper exists on Linux only.
func runPoweroffHelper() {
	fmt.Fprintln(os.Stderr, "nymote: poweroff is for Linux appliances")
	os.Exit(1)
}
