/* tryload: ask the running kernel to load or unload one module, report its errno.
 *
 *   tryload insert FILE [PARAMS]
 *                         init_module(contents of FILE, len, PARAMS or "") -> prints "errno=N"
 *   tryload insert-nocap FILE [PARAMS]
 *                         the same, with CAP_SYS_MODULE first dropped from the effective set
 *                         (as in a container without it): may_init_module's EPERM
 *   tryload remove NAME   delete_module(NAME, O_NONBLOCK)          -> prints "errno=N"
 *
 * N is 0 on success. Raw syscalls, no libkmod, no decompression (the e2e harness unpacks
 * .ko.xz on the host), so the kernel sees exactly the bytes of FILE. Built with
 * `gcc -static -O2` and run as a tool of the e2e initramfs (tests/e2e/run-vm.sh).
 * Exit status: 0 when the syscall succeeded, 1 when it failed, 2 on bad usage or an
 * unreadable FILE (then no "errno=" line is printed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Clears CAP_SYS_MODULE from this process's effective set (the permitted set keeps it). */
static int drop_cap_sys_module(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	if (syscall(SYS_capget, &hdr, data) != 0)
		return -1;
	data[CAP_TO_INDEX(CAP_SYS_MODULE)].effective &= ~CAP_TO_MASK(CAP_SYS_MODULE);
	return (int)syscall(SYS_capset, &hdr, data);
}

static int insert(const char *path, const char *params)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "tryload: %s: %s\n", path, strerror(errno));
		return 2;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size <= 0) {
		fprintf(stderr, "tryload: %s: empty or unreadable\n", path);
		close(fd);
		return 2;
	}
	size_t len = (size_t)st.st_size, got = 0;
	char *buf = malloc(len);
	if (!buf) {
		fprintf(stderr, "tryload: %s: out of memory\n", path);
		close(fd);
		return 2;
	}
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "tryload: %s: short read\n", path);
			close(fd);
			free(buf);
			return 2;
		}
		got += (size_t)n;
	}
	close(fd);
	long rc = syscall(SYS_init_module, buf, len, params);
	int err = rc == 0 ? 0 : errno;
	free(buf);
	printf("errno=%d\n", err);
	return err == 0 ? 0 : 1;
}

static int remove_module(const char *name)
{
	long rc = syscall(SYS_delete_module, name, O_NONBLOCK);
	int err = rc == 0 ? 0 : errno;
	printf("errno=%d\n", err);
	return err == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if ((argc == 3 || argc == 4) && strcmp(argv[1], "insert") == 0)
		return insert(argv[2], argc == 4 ? argv[3] : "");
	if ((argc == 3 || argc == 4) && strcmp(argv[1], "insert-nocap") == 0) {
		if (drop_cap_sys_module() != 0) {
			fprintf(stderr, "tryload: dropping CAP_SYS_MODULE: %s\n", strerror(errno));
			return 2;
		}
		return insert(argv[2], argc == 4 ? argv[3] : "");
	}
	if (argc == 3 && strcmp(argv[1], "remove") == 0)
		return remove_module(argv[2]);
	fprintf(stderr, "usage: tryload insert[-nocap] FILE [PARAMS] | tryload remove NAME\n");
	return 2;
}
