/*
 * imgfmt.c: container image formats by their magic (imgfmt.h). The
 * magics are those of the formats' specifications: qcow2 "QFI\xfb" at 0;
 * VMDK's sparse extent "KDMV" at 0, or a descriptor file's comment line;
 * VHDX "vhdxfile" at 0; a dynamic VHD's copy of its footer, "conectix",
 * at 0; VDI's signature 0xbeda107f (little-endian) at byte 64, after its
 * text banner.
 */
#include <string.h>
#include <unistd.h>

#include "imgfmt.h"

const char *imgfmt_detect(const uint8_t *head, size_t n)
{
	static const char vmdk_desc[] = "# Disk DescriptorFile";

	if (n >= 4 && memcmp(head, "QFI\xfb", 4) == 0)
		return "qcow2";
	if (n >= 4 && memcmp(head, "KDMV", 4) == 0)
		return "vmdk";
	if (n >= sizeof vmdk_desc - 1 &&
	    memcmp(head, vmdk_desc, sizeof vmdk_desc - 1) == 0)
		return "vmdk";
	if (n >= 8 && memcmp(head, "vhdxfile", 8) == 0)
		return "vhdx";
	if (n >= 8 && memcmp(head, "conectix", 8) == 0)
		return "vpc";
	if (n >= 68 && memcmp(head + 64, "\x7f\x10\xda\xbe", 4) == 0)
		return "vdi";
	return NULL;
}

const char *imgfmt_detect_fd(int fd)
{
	uint8_t head[IMGFMT_HEAD];
	ssize_t n = pread(fd, head, sizeof head, 0);

	return n > 0 ? imgfmt_detect(head, (size_t)n) : NULL;
}
