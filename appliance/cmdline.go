package appliance

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/nymote/nymote/appliance/app"
)

// bootConfig is the runtime's configuration from the kernel command line.
type bootConfig struct {
	// net is the network kind: "netstack" (the default: a gVisor netstack
	// on an AF_PACKET socket bound to nic) or "kernel" (the guest kernel's
	// own stack; for tests of the boot pipeline).
	net string
	// nic is the network interface (nymote.nic, default eth0).
	nic string
	// ip and gw are a static address (nymote.ip, nymote.gw); zero: DHCP.
	ip netip.Prefix
	gw netip.Addr
	// dns are name servers (nymote.dns=ADDR,ADDR), tried before those
	// learned from DHCP.
	dns []netip.Addr
	// data is the data disk's device (nymote.data, default /dev/vda).
	data string
	// ephemeral serves from a tmpfs when there is no data disk
	// (nymote.ephemeral=1).
	ephemeral bool
	// poweroffOnCrash powers off instead of rebooting when the service
	// fails (nymote.oncrash=poweroff).
	poweroffOnCrash bool
	// poweroffByReset powers off by a reset (nymote.poweroff=reset), for
	// a VMM that ends the VM on a reset and has no power-off device
	// (Firecracker, with reboot=k); nymote.poweroff=off is the default.
	poweroffByReset bool
	// debug logs at debug level (nymote.log=debug).
	debug bool
	// seed is the FAT boot partition holding the random seed file that
	// U-Boot hands to the kernel (nymote.seed=DEVICE, set by an SD card's
	// boot.scr); the runtime replaces the seed at each boot. "": none.
	seed string
	// proxy are the networks a proxy in front of the appliance (jitsu)
	// connects from; connections from them start with a PROXY protocol
	// header giving the client's address (nymote.proxy=CIDR[,CIDR]; see
	// ProxyListener). Empty: no header is read from anyone.
	proxy []netip.Prefix
	// modules are kernel modules to load (nymote.modules=a,b), in
	// addition to the image's /etc/nymote/modules.
	modules []string
	// updateDisk is the update disk (nymote.updatedisk=DEVICE, or auto
	// to find it by its header), set by a launcher that keeps image
	// slots: the runtime then serves updates on app.UpdatePort. "": none.
	updateDisk string
	// sdSlot is the booted slot of an SD card board with A/B slots
	// (nymote.sdslot=a|b, set by the card's boot script; package
	// sdboot): the runtime then serves updates on app.UpdatePort into the
	// other slot, and commits a test boot on its good line. "": none.
	sdSlot string
	// trial is set on a host-booted image's test boot (nymote.trial=1,
	// added by a launcher that keeps slots, package update): its data
	// format check serves the data as it is and migrates only after the
	// commit (see checkDataFormat).
	trial bool
	// testBootBound is how long a test boot of an SD card board may take
	// to be good before the runtime reboots into the committed slot
	// (nymote.testboot=DURATION; DefaultTestBootBound).
	testBootBound time.Duration
	// settle is how long the service must keep serving before the runtime
	// prints its good line (nymote.settle=DURATION; app.DefaultSettle).
	settle time.Duration
	// service holds the other nymote.KEY=VALUE options.
	service map[string]string
}

// DefaultTestBootBound is how long an SD card board's test boot may take
// to be good (nymote.testboot).
const DefaultTestBootBound = 5 * time.Minute

// parseCmdline reads the nymote.* options of a kernel command line.
func parseCmdline(cmdline string) (bootConfig, error) {
	c := bootConfig{net: "netstack", nic: "eth0", data: "/dev/vda", settle: app.DefaultSettle, testBootBound: DefaultTestBootBound, service: map[string]string{}}
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		key, ok := strings.CutPrefix(k, "nymote.")
		if !ok {
			continue
		}
		var err error
		switch key {
		case "net":
			if v != "netstack" && v != "kernel" {
				err = fmt.Errorf("want netstack or kernel")
			}
			c.net = v
		case "nic":
			c.nic = v
		case "ip":
			c.ip, err = netip.ParsePrefix(v)
			if err == nil && !c.ip.Addr().Is4() {
				err = fmt.Errorf("want an IPv4 address with its prefix length, such as 10.0.2.15/24")
			}
		case "gw":
			c.gw, err = netip.ParseAddr(v)
		case "dns":
			for _, a := range strings.Split(v, ",") {
				var ip netip.Addr
				if ip, err = netip.ParseAddr(a); err != nil {
					break
				}
				c.dns = append(c.dns, ip)
			}
		case "data":
			c.data = v
		case "updatedisk":
			c.updateDisk = v
		case "sdslot":
			c.sdSlot = v
			if v != "a" && v != "b" {
				err = fmt.Errorf("want a or b")
			}
		case "trial":
			switch v {
			case "1", "":
				c.trial = true
			case "0":
			default:
				err = fmt.Errorf("want 1 or 0")
			}
		case "testboot":
			c.testBootBound, err = time.ParseDuration(v)
			if err == nil && c.testBootBound <= 0 {
				err = fmt.Errorf("want a positive duration, such as 5m")
			}
		case "settle":
			c.settle, err = time.ParseDuration(v)
			if err == nil && c.settle <= 0 {
				err = fmt.Errorf("want a positive duration, such as 5s")
			}
		case "seed":
			c.seed = v
		case "ephemeral":
			c.ephemeral = v == "1" || v == "true" || v == ""
		case "oncrash":
			switch v {
			case "reboot":
				c.poweroffOnCrash = false
			case "poweroff":
				c.poweroffOnCrash = true
			default:
				err = fmt.Errorf("want reboot or poweroff")
			}
		case "poweroff":
			switch v {
			case "off":
				c.poweroffByReset = false
			case "reset":
				c.poweroffByReset = true
			default:
				err = fmt.Errorf("want off or reset")
			}
		case "log":
			c.debug = v == "debug"
		case "proxy":
			c.proxy, err = ParseProxyNetworks(v)
		case "modules":
			for _, m := range strings.Split(v, ",") {
				if m != "" {
					c.modules = append(c.modules, m)
				}
			}
		default:
			c.service[key] = v
		}
		if err != nil {
			return c, fmt.Errorf("kernel command line %s: %v", f, err)
		}
	}
	return c, nil
}
