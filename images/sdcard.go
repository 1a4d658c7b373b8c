package images

import (
	"bytes"
	"context"
	bin "encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nymote/nymote/appliance/app"
	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/internal/bootseed"
	"github.com/nymote/nymote/internal/fat"
	"github.com/nymote/nymote/internal/sdboot"
)

// SD card layout (Allwinner boards: the boot ROM loads the SPL from 8 KiB;
// the partitions are package sdboot's: boot, slot a, slot b, data).
const (
	// SDCardFile is the SD card image's name in the output folder.
	SDCardFile = "sdcard.img"
	// sdUBootOffset is where U-Boot with its SPL goes.
	sdUBootOffset = 8 << 10
	// sdPartStart is where the first partition starts.
	sdPartStart = 1 << 20
	// sdBootSize is the boot partition's size: boot.scr, uboot.env and
	// seed.txt (FAT16 needs 4 MiB at least).
	sdBootSize = 8 << 20
	// sdDefaultSlotSize is each slot partition's size unless set.
	sdDefaultSlotSize = 64 << 20
	// sdDiskID is the MBR's disk signature (fixed: images are
	// reproducible; the partitions are PARTUUID 6e796d6f-01 to -04).
	sdDiskID = 0x6e796d6f
	// sdBootVolumeID is the FAT volume serial of the boot partition.
	sdBootVolumeID = 0x6e796d74
	// SDCardBootLabel is the boot partition's FAT volume label.
	SDCardBootLabel = "NYMOTE-BOOT"
	// SDCardSeedDevice is the boot partition as the appliance's kernel
	// names it on the Cubieboard family (the card in the first MMC slot),
	// where the appliance refreshes the random seed and keeps the slots'
	// state (uboot.env).
	SDCardSeedDevice = "/dev/mmcblk0p1"
)

// Files on an SD card's partitions.
const (
	sdScript = sdboot.BootScriptFile
	sdEnv    = sdboot.EnvFile
	// SDSlotScriptFile is the slot script (sdboot.SlotScript) as an image
	// file: the SD card output writes it beside the kernel, the device
	// tree and the initramfs, so that an update carries a whole slot.
	SDSlotScriptFile = sdboot.SlotScriptFile
)

// SDCardInput is what WriteSDCard puts on an SD card image.
type SDCardInput struct {
	// UBoot is U-Boot with its SPL for the board, such as Debian's
	// /usr/lib/u-boot/Cubieboard/u-boot-sunxi-with-spl.bin; it goes at
	// 8 KiB. Its built-in default environment is the base of the card's
	// uboot.env. Required.
	UBoot string
	// Kernel is the kernel's zImage. Required.
	Kernel string
	// DTB is the board's device tree; its file name is kept on the
	// card. Required.
	DTB string
	// Initrd is the initramfs. Required.
	Initrd string
	// Cmdline is the kernel command line. The slot script adds
	// nymote.seed=SeedDevice and nymote.sdslot=SLOT.
	Cmdline string
	// SeedDevice is the boot partition as the appliance sees it, where it
	// refreshes the random seed; "" means SDCardSeedDevice.
	SeedDevice string
	// App and Board name the image in slot a's nymote.txt (status).
	App, Board string
	// DataDisk is a data disk image (ext4, from disk.Create) copied into
	// the data partition; "" makes an empty one (ext4, labelled
	// nymote-data) of DataSize bytes.
	DataDisk string
	// DataSize is the size of the empty data partition (when DataDisk is
	// ""), at least 16 MiB.
	DataSize int64
	// BootSize is each slot partition's size, a whole number of MiB; 0
	// means 64 MiB.
	BootSize int64
}

// SDCardLayout says where WriteSDCard put the partitions.
type SDCardLayout struct {
	// BootStart, BootSize, DataStart and DataSize are in bytes from the
	// start of the image; SlotStart are slot a's and b's starts, each
	// SlotSize long.
	BootStart, BootSize, DataStart, DataSize int64
	SlotStart                                [2]int64
	SlotSize                                 int64
}

// SDSlotScript returns the slot script image (nymote.scr) for a board's
// device tree file name and kernel command line.
func SDSlotScript(dtb, cmdline, seedDev string) ([]byte, error) {
	if seedDev == "" {
		seedDev = SDCardSeedDevice
	}
	src, err := sdboot.SlotScript(dtb, cmdline, seedDev)
	if err != nil {
		return nil, fmt.Errorf("sdcard: %w", err)
	}
	return sdboot.ScriptImage("nymote slot script", src), nil
}

// WriteSDCard writes an SD card image for a U-Boot board at out: an MBR,
// U-Boot with its SPL at 8 KiB, a FAT16 boot partition from 1 MiB (flagged
// bootable, where U-Boot finds uboot.env and boot.scr: the A/B try-once
// script of package sdboot) holding boot.scr, uboot.env, a copy of it
// (uboot.def, to repair a damaged one) and an empty random seed file (see package internal/bootseed; nymote flash writes a
// seed), slot a (FAT16: the kernel, the device tree, the initramfs, the
// slot script), slot b (empty until an update writes it), then the ext4
// data partition. The same input gives the same bytes; an image holding a
// data disk is readable by its owner only. The image file is sparse; QEMU
// wants an SD card whose size is a power of two (truncate a copy), real
// cards take it as it is.
func WriteSDCard(ctx context.Context, out string, in SDCardInput) (l SDCardLayout, err error) {
	for _, f := range []struct{ field, path string }{{"UBoot", in.UBoot}, {"Kernel", in.Kernel}, {"DTB", in.DTB}, {"Initrd", in.Initrd}} {
		if f.path == "" {
			return l, fmt.Errorf("sdcard: no %s file given", f.field)
		}
	}
	if err := sdboot.CheckCmdline(in.Cmdline); err != nil {
		return l, fmt.Errorf("sdcard: %w", err)
	}
	if in.BootSize == 0 {
		in.BootSize = sdDefaultSlotSize
	}
	if in.BootSize%(1<<20) != 0 {
		return l, fmt.Errorf("sdcard: slot partition size %d: want a whole number of MiB", in.BootSize)
	}
	if in.SeedDevice == "" {
		in.SeedDevice = SDCardSeedDevice
	}
	uboot, err := os.ReadFile(in.UBoot)
	if err != nil {
		return l, fmt.Errorf("sdcard: U-Boot: %w", err)
	}
	if len(uboot) > sdPartStart-sdUBootOffset {
		return l, fmt.Errorf("sdcard: U-Boot %s is %d bytes; at most %d fit between 8 KiB and the first partition", in.UBoot, len(uboot), sdPartStart-sdUBootOffset)
	}
	env, err := ubootEnv(uboot)
	if err != nil {
		return l, fmt.Errorf("sdcard: %s: %w", in.UBoot, err)
	}
	dtb := filepath.Base(in.DTB)
	slotFiles := map[string][]byte{}
	for _, f := range []struct{ name, path string }{{sdboot.KernelFile, in.Kernel}, {dtb, in.DTB}, {sdboot.InitrdFile, in.Initrd}} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return l, fmt.Errorf("sdcard: %w", err)
		}
		slotFiles[f.name] = b
	}
	if slotFiles[sdboot.SlotScriptFile], err = SDSlotScript(dtb, in.Cmdline, in.SeedDevice); err != nil {
		return l, err
	}
	info := sdboot.Info{App: in.App, Board: in.Board}
	if a, err := app.Lookup(in.App); err == nil {
		info.DataFormat = a.Data.Current()
	}
	slotA, err := sdboot.SlotFiles(slotFiles, dtb, info)
	if err != nil {
		return l, fmt.Errorf("sdcard: %w", err)
	}
	bootFiles := []fat.File{
		{Name: sdScript, Data: sdboot.ScriptImage("nymote boot script", sdboot.BootScript())},
		{Name: sdEnv, Data: env},
		{Name: sdboot.DefaultEnvFile, Data: env},
		{Name: bootseed.FileName, Data: bootseed.Empty()},
	}

	tmp, err := os.MkdirTemp(filepath.Dir(out), ".sdcard-")
	if err != nil {
		return l, fmt.Errorf("sdcard: %w", err)
	}
	defer os.RemoveAll(tmp)
	data := in.DataDisk
	if data == "" {
		data = filepath.Join(tmp, "data.img")
		if err := datadisk.CreateEmpty(ctx, data, in.DataSize); err != nil {
			return l, fmt.Errorf("sdcard: empty data partition: %w", err)
		}
	}
	df, err := os.Open(data)
	if err != nil {
		return l, fmt.Errorf("sdcard: data disk: %w", err)
	}
	defer df.Close()
	fi, err := df.Stat()
	if err != nil {
		return l, fmt.Errorf("sdcard: data disk: %w", err)
	}
	if err := checkExt4(df); err != nil {
		return l, fmt.Errorf("sdcard: data disk %s: %w", data, err)
	}
	l = SDCardLayout{BootStart: sdPartStart, BootSize: sdBootSize, SlotSize: in.BootSize}
	l.SlotStart[0] = l.BootStart + l.BootSize
	l.SlotStart[1] = l.SlotStart[0] + l.SlotSize
	l.DataStart, l.DataSize = l.SlotStart[1]+l.SlotSize, (fi.Size()+511)&^511

	img := filepath.Join(tmp, "sdcard.img")
	// An image with a person's data disk is theirs alone.
	perm := os.FileMode(0o644)
	if in.DataDisk != "" {
		perm = 0o600
	}
	f, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_RDWR, perm)
	if err != nil {
		return l, fmt.Errorf("sdcard: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(l.DataStart + l.DataSize); err != nil {
		return l, fmt.Errorf("sdcard: %w", err)
	}
	if _, err := f.WriteAt(mbr(l), 0); err != nil {
		return l, fmt.Errorf("sdcard: %w", err)
	}
	if _, err := f.WriteAt(uboot, sdUBootOffset); err != nil {
		return l, fmt.Errorf("sdcard: %w", err)
	}
	if err := fat.Write(f, l.BootStart, fat.Options{Size: l.BootSize, Label: SDCardBootLabel, VolumeID: sdBootVolumeID, HiddenSectors: uint32(l.BootStart / 512)}, bootFiles); err != nil {
		return l, fmt.Errorf("sdcard: boot partition: %w", err)
	}
	if err := sdboot.WriteSlot(f, l.SlotStart[0], l.SlotSize, uint32(l.SlotStart[0]/512), "a", slotA); err != nil {
		return l, fmt.Errorf("sdcard: slot a: %w", err)
	}
	if err := copySparse(ctx, f, l.DataStart, df); err != nil {
		return l, fmt.Errorf("sdcard: data partition: %w", err)
	}
	if err := f.Sync(); err != nil {
		return l, fmt.Errorf("sdcard: %w", err)
	}
	if err := os.Rename(img, out); err != nil {
		return l, fmt.Errorf("sdcard: %w", err)
	}
	return l, nil
}

// checkExt4 checks that r starts with an ext2/3/4 superblock.
func checkExt4(r io.ReaderAt) error {
	sb := make([]byte, 2)
	if _, err := r.ReadAt(sb, 1024+0x38); err != nil || bin.LittleEndian.Uint16(sb) != 0xEF53 {
		return fmt.Errorf("%w: no ext4 file system (make one with nymote disk create)", datadisk.ErrBadDisk)
	}
	return nil
}

// mbr returns the card's master boot record: partition 1 the bootable FAT16
// boot partition, 2 and 3 the FAT16 slots, 4 the Linux data partition.
func mbr(l SDCardLayout) []byte {
	b := make([]byte, 512)
	le := bin.LittleEndian
	le.PutUint32(b[440:], sdDiskID)
	entry := func(i int, boot bool, typ byte, start, size int64) {
		e := b[446+16*i : 446+16*(i+1)]
		if boot {
			e[0] = 0x80
		}
		// CHS addresses: "beyond CHS", everyone reads the LBA fields.
		copy(e[1:4], []byte{0xFE, 0xFF, 0xFF})
		e[4] = typ
		copy(e[5:8], []byte{0xFE, 0xFF, 0xFF})
		le.PutUint32(e[8:], uint32(start/512))
		le.PutUint32(e[12:], uint32(size/512))
	}
	entry(0, true, 0x0E, l.BootStart, l.BootSize) // FAT16, LBA
	entry(1, false, 0x0E, l.SlotStart[0], l.SlotSize)
	entry(2, false, 0x0E, l.SlotStart[1], l.SlotSize)
	entry(3, false, 0x83, l.DataStart, l.DataSize)
	b[510], b[511] = 0x55, 0xAA
	return b
}

// copySparse copies r into w at off, skipping blocks of zeros (w is a new
// sparse file, so they read as zeros already).
func copySparse(ctx context.Context, w io.WriterAt, off int64, r io.Reader) error {
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for at := int64(0); ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := w.WriteAt(buf[:n], off+at); err != nil {
				return err
			}
		}
		at += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
