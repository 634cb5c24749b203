// SPDX-License-Identifier: GPL-2.0
/*
 * LD_PRELOAD shim for trace-cmd on kernels that deny the function-tracer
 * control files (EPERM on set_ftrace_filter, set_ftrace_pid, and on
 * writing /proc/sys/kernel/ftrace_enabled, as on this project's 6.18 CI
 * host). trace-cmd 3.1 dies on them even when it records events only;
 * the shim opens /dev/null instead, so event recording (all that the IPI
 * deferral series' method needs) works. Used by bench/census-vs-trace-cmd.sh and
 * the census import test only when plain trace-cmd fails.
 *
 *   cc -shared -fPIC -O2 -o shim.so trace-cmd-shim.c -ldl
 *   LD_PRELOAD=./shim.so trace-cmd record ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>

static int denied(const char *p)
{
	return p && (strstr(p, "set_ftrace_") || strstr(p, "set_graph_") ||
		     strstr(p, "kernel/ftrace_enabled") || strstr(p, "set_event_notrace_pid"));
}

static int null_fd(int flags)
{
	int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
	return real("/dev/null", flags & ~(O_CREAT | O_TRUNC | O_DIRECTORY));
}

/* ftrace_enabled opens fine but writing it fails: redirect writers up
 * front. The set_ftrace_* files fail at open: redirect on failure. */
static int early(const char *p, int flags)
{
	return p && strstr(p, "kernel/ftrace_enabled") && (flags & O_ACCMODE) != O_RDONLY;
}

static int redirect(const char *p, int flags, int fd)
{
	if (fd >= 0 || !denied(p))
		return fd;
	return null_fd(flags);
}

int open(const char *p, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	int mode = va_arg(ap, int);
	va_end(ap);
	if (early(p, flags))
		return null_fd(flags);
	int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
	return redirect(p, flags, real(p, flags, mode));
}

int open64(const char *p, int flags, ...) __attribute__((alias("open")));

/* _FORTIFY_SOURCE callers. */
int __open_2(const char *p, int flags)
{
	return open(p, flags, 0);
}

int __open64_2(const char *p, int flags) __attribute__((alias("__open_2")));

int openat(int dir, const char *p, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	int mode = va_arg(ap, int);
	va_end(ap);
	if (early(p, flags))
		return null_fd(flags);
	int (*real)(int, const char *, int, ...) = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
	return redirect(p, flags, real(dir, p, flags, mode));
}

int openat64(int dir, const char *p, int flags, ...) __attribute__((alias("openat")));
