/* xlucheck reads an xl configuration file with Xen's own parser
 * (libxlutil, as xl create does) and prints the settings a slot boot
 * sets: kernel, ramdisk, extra, on_reboot, and each disk as
 * xlu_disk_parse reads it (vdev, target, format, read-write). It exits
 * non-zero when the file or a disk specification does not parse.
 * Built by TestXLSlotConfigLibxlu (launch/slotcfg_test.go). */
#include <stdio.h>
#include <libxl.h>
#include <libxlutil.h>

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: xlucheck FILE\n");
		return 2;
	}
	XLU_Config *c = xlu_cfg_init(stderr, argv[1]);
	if (!c || xlu_cfg_readfile(c, argv[1]))
		return 1;
	const char *keys[] = {"kernel", "ramdisk", "extra", "on_reboot"};
	for (int i = 0; i < 4; i++) {
		const char *s;
		if (!xlu_cfg_get_string(c, keys[i], &s, 0))
			printf("%s %s\n", keys[i], s);
	}
	XLU_ConfigList *l;
	int n;
	if (!xlu_cfg_get_list(c, "disk", &l, &n, 0)) {
		for (int i = 0; i < n; i++) {
			const char *d = xlu_cfg_get_listitem(l, i);
			libxl_device_disk disk;
			libxl_device_disk_init(&disk);
			if (xlu_disk_parse(c, 1, &d, &disk))
				return 1;
			printf("disk %s %s %s %s\n", disk.vdev, disk.pdev_path, libxl_disk_format_to_string(disk.format), disk.readwrite ? "rw" : "ro");
		}
	}
	return 0;
}
