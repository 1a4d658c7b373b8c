// Package launch boots built Nymote images in virtual machines: it is the
// one launcher behind nymote run, jitsu's VM launchers and the boot tests.
//
// Package images builds artefacts (kernel, initramfs, per-board outputs,
// manifest.json) and says which of them a boot uses (images.QEMUImage);
// this package takes them from there: it is handed a board resolved once
// by its caller and resolves none itself. It owns
//
//   - the QEMU command line (QEMUCommand): machine, accelerator, memory
//     (DefaultMemoryMiB unless set; fixed for boards that need it), kernel,
//     initramfs and device tree, the data disk on the board's interface,
//     QEMU's user network with its port forwards (Forward) and the static
//     guest addresses on it (GuestNet), and a QMP socket;
//   - starting QEMU (StartQEMU), with what a boot needs on this host: a
//     fresh RNG seed in a copy of the device tree of a board without an
//     RNG (SeedDeviceTree), the TSC frequency of an x86-64 guest under TCG
//     (TCGCmdline), a check of an SD card slot's disk size;
//   - the KVM probe, with TCG when KVM does not work (UseKVM, ProbeKVM);
//   - a running VM (VM): its console lines, waiting for a line or for the
//     exit, QMP commands, a clean power-off (QMP system_powerdown) and
//     pulling the plug;
//   - SD card boots under QEMU 10 (StartSDCard);
//   - boots from image slots (package update), one path for every
//     launcher: the slots beside the data disk with their update disk and
//     the configured image installed when it changed (DiskSlots), the slot
//     to boot by the try-once rule once a received update is installed
//     (NextBoot), the watch of a test boot that commits the new image on
//     the appliance's good line (WatchTestBoot, on any Booted: QEMU's or
//     Firecracker's console, xl console), the test boot told to the
//     runtime (nymote.trial=1, so that it serves the data as it is and
//     migrates only after the commit: QEMU.TestBoot, and the slot
//     configurations of Firecracker and xl), and whether an exited
//     appliance rebooted into an update or to migrate its data
//     (UpdateReboot); QEMU attaches the update disk (QEMU.UpdateDisk),
//     Firecracker and xl boot a configuration for the slot
//     (FirecrackerSlotConfig, XLSlotConfig: the slot's kernel, initramfs
//     and command line, the data disk, the update disk);
//   - Xen guests with the xl toolstack (CreateXL, XLCommands, XL.Console;
//     the xl configuration grammar, ParseXLConfig and FormatXLConfig,
//     which images also checks its xl.cfg with) and Firecracker microVMs
//     (StartFirecracker: its command line, console and API calls).
//
// Errors start with "launch:".
//
// Layers: cmd/nymote and jitsu import launch and images; images imports
// launch for the command line of its run-qemu.sh; launch imports boards,
// appliance/app and update (which imports only the standard library and
// appliance/app), and nothing of images.
package launch
