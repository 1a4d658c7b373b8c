// Package update keeps appliances' images immutable and their updates
// boring: signed images, two slots per appliance, a test boot and an
// automatic rollback.
//
// Signing. A signing key (CreateKey: Ed25519, PKCS #8 PEM, mode 0600) stays
// on the host; nymote build --sign KEY writes manifest.sig, the key's
// signature over manifest.json, which lists the size and sha256 of every
// artefact, so one signature covers the whole image. The image carries the
// key's public half as the keys it trusts (TrustedKeysPath in the
// initramfs, trusted_keys in the manifest). An update is accepted only if
// VerifySignature finds its signer trusted, directly or through a chain of
// endorsements (Rotate: the old key signs the new one; the new image then
// trusts the new key), and every file matches the manifest: another key's
// image (ErrUntrusted) and a tampered one (ErrTampered) are refused before
// anything is written.
//
// Slots. A host-booted appliance (QEMU boards, microvm, Firecracker, Xen)
// has two image folders beside its data disk (Slots, SlotsDir: DISK.slots/a
// and b) and a state file. Install verifies an image, writes it to the
// inactive slot and marks it next; Boot applies the try-once rule (the new
// image is booted once, its try recorded before the boot); the launcher
// calls Commit when the appliance reports itself good (the runtime's
// console line app.GoodMarker: its service kept serving past the settle
// time and its data disk is mounted read-write); a boot that finds a tried,
// uncommitted image returns to the committed one. Every state change is
// one atomic rename, so a power cut at any Stage leaves an appliance that
// boots one of its two images. Data disks are never written by an update.
// Every host launcher (nymote run --slots and jitsu's qemu, firecracker
// and xl launchers) goes through the same calls, by way of package
// launch (DiskSlots, NextBoot, WatchTestBoot); QEMU boots the slot's
// folder, Firecracker and xl a configuration naming the slot's files.
//
// Data formats. An app declares the format of the data its code writes
// (app.App.Data: a number bumped when a migration is added), the older
// formats it serves from as they are, and its forward migrations (each
// from format N to N+1, by name; their code is the app's:
// appliance.Service.Migrations, MigrationFunc). The build writes this into
// the signed manifest (data_format). The data disk records the format it
// is in (DataFormatFile, a node file beside the store, replaced
// atomically and synced). At each boot the runtime compares: the same
// format runs as it is; an image writing a newer format test-boots on the
// data as it is, without migrating (it must read the disk's format, else
// it refuses to serve, its test boot is not good and the slot logic
// returns to the committed image); once committed (the launcher's commit
// on the good line for a VM, the runtime's own on an SD card board) the
// appliance reboots (app.MigrateRebootLine) and that boot, no longer a
// test, migrates forward before serving (Migrate), logging each step by
// name. The record is the journal: it names the step under way, so a
// crash in a migration resumes it at the next boot; steps are idempotent
// (they run again from the start on what the crash left). An image
// writing an older format than the disk's (a rollback after a committed
// migration) refuses to serve, naming both formats. CheckFormat applies
// the rule before anything is written: the Receiver (DiskFormat) refuses
// such an update, Slots.CheckRollback such a rollback and Install (with
// InstallOptions.DiskFormat, from DiskFormatOf, which reads a disk image
// with debugfs) such an install.
//
// Transport. Receiver is the http.Handler an appliance serves updates on:
// it reads an image bundle (WriteBundle: manifest, signature, files, as a
// tar stream) and verifies it against the running image's trusted keys.
// For host-booted VMs the bundle streams onto the update disk (a raw disk
// the launcher attaches beside the data disk) as it arrives, each file
// hashed on the way through a bounded buffer (VerifyBundle), so a 64 MiB
// appliance takes a 32 MiB image: the disk is marked empty once the
// signature is verified, and its header, written last, makes the bundle
// visible only once every file matched (UpdateDiskWriter); the host
// installs it into the inactive slot at the next boot (PickUp). SD card
// boards verify the image in memory (ReadBundle) and only then write it
// into the card's other slot partition, whose try-once state U-Boot keeps
// (package internal/sdboot). Bundles leave out BundleSkips (the SD card
// image, whose boot files travel on their own).
package update
