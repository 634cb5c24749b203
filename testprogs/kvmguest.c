// SPDX-License-Identifier: GPL-2.0
/*
 * kvmguest: a tiny VMM on /dev/kvm for the VM-exit tests. One vCPU runs a
 * real-mode guest that spins, and on demand executes `hlt` or `out`
 * (guest-caused exits); its thread is pinned to an isolated CPU. A
 * housekeeping thread of the same process mmaps, touches and munmaps a
 * page: the TLB-flush IPIs reach the CPU the vCPU thread runs on (it runs
 * with the process's mm), which takes the guest out with an external
 * interrupt exit (host-caused).
 *
 *   kvmguest [--cpu N] [--hk M] [--hlt K] [--out K] [--flushes F]
 *            [--period-us P] [--timeout S] [--hold FILE] [--go FILE]
 *            [--run FILE] [--phased]
 *
 * No in-kernel irqchip: HLT and port I/O both come back to this program
 * (KVM_EXIT_HLT, KVM_EXIT_IO). Prints "pid=P vcpu_tid=T" once the guest
 * runs, then, when the K hlt, K out and F flushes are done, one JSON
 * line with what it did. Exits 1 if it could not do them in S seconds.
 * --go FILE waits for FILE before the guest first runs (a test starts
 * its watcher meanwhile, with CPU N still idle).
 * --hold FILE keeps the VM (its vCPU stopped) until FILE exists, so that
 * a test can look at the host's threads for it.
 * --run FILE: the vCPU thread exists (its tid printed) but waits for FILE
 * before its first KVM_RUN (a test registers that thread meanwhile).
 * --phased: the flushes start only once the hlt and out exits are done;
 * then a line {"phase":"guest",...} says the guest-caused part is over.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE 0x10000
#define CODE_AT 0x1000
#define CMD_AT 0x500
#define CMD_HLT 1
#define CMD_OUT 2
#define OUT_PORT 0x10

/* The guest, 16-bit real mode, DS = 0: poll the command byte, clear it,
 * and execute what it asks for. */
extern const unsigned char guest_start[], guest_end[];
__asm__(".pushsection .rodata\n"
	".globl guest_start, guest_end\n"
	"guest_start:\n"
	".code16\n"
	"1: movb 0x500, %al\n"
	"   cmpb $1, %al\n"
	"   je 2f\n"
	"   cmpb $2, %al\n"
	"   je 3f\n"
	"   jmp 1b\n"
	"2: movb $0, 0x500\n"
	"   hlt\n"
	"   jmp 1b\n"
	"3: movb $0, 0x500\n"
	"   outb %al, $0x10\n"
	"   jmp 1b\n"
	".code64\n"
	"guest_end:\n"
	".popsection\n");

static int vcpu_fd, cpu = 1, hk = 0;
static struct kvm_run *run;
static volatile uint8_t *mem;
static atomic_int stop;
static atomic_long hlts, outs, others, flushes;
static atomic_int vcpu_tid;
static atomic_int flush_go = 1;
static const char *run_file;

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void pin(int c)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(c, &s);
	if (sched_setaffinity(0, sizeof(s), &s))
		die("sched_setaffinity");
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void *vcpu_thread(void *arg)
{
	(void)arg;
	pin(cpu);
	atomic_store(&vcpu_tid, (int)syscall(SYS_gettid));
	while (run_file && access(run_file, F_OK))
		usleep(10000);
	while (!atomic_load(&stop)) {
		if (ioctl(vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			die("KVM_RUN");
		}
		switch (run->exit_reason) {
		case KVM_EXIT_HLT:
			atomic_fetch_add(&hlts, 1);
			break;
		case KVM_EXIT_IO:
			if (run->io.port == OUT_PORT)
				atomic_fetch_add(&outs, 1);
			else
				atomic_fetch_add(&others, 1);
			break;
		default:
			fprintf(stderr, "kvmguest: unexpected exit %u\n", run->exit_reason);
			atomic_fetch_add(&others, 1);
			if (run->exit_reason == KVM_EXIT_FAIL_ENTRY ||
			    run->exit_reason == KVM_EXIT_INTERNAL_ERROR ||
			    run->exit_reason == KVM_EXIT_SHUTDOWN)
				exit(2);
		}
	}
	return NULL;
}

/* Housekeeping: a page mapped, touched and unmapped, every period. */
static long flush_target;
static unsigned period_us = 1000;
static void *flush_thread(void *arg)
{
	(void)arg;
	pin(hk);
	while (!atomic_load(&flush_go) && !atomic_load(&stop))
		usleep(1000);
	while (!atomic_load(&stop) && atomic_load(&flushes) < flush_target) {
		char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			die("mmap");
		p[0] = 1;
		munmap(p, 4096);
		atomic_fetch_add(&flushes, 1);
		usleep(period_us);
	}
	return NULL;
}

/* Ask the guest for one exit and wait until the vCPU thread saw it. */
static int request(uint8_t cmd, atomic_long *count, double deadline)
{
	long before = atomic_load(count);

	mem[CMD_AT] = cmd;
	while (atomic_load(count) == before) {
		if (now() > deadline)
			return -1;
		usleep(1000);
	}
	return 0;
}

int main(int argc, char **argv)
{
	long nhlt = 10, nout = 10;
	double timeout = 120;
	const char *hold = NULL, *go = NULL;
	pthread_t vt, ft;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
		if (!strcmp(a, "--cpu"))
			cpu = atoi(v), i++;
		else if (!strcmp(a, "--hk"))
			hk = atoi(v), i++;
		else if (!strcmp(a, "--hlt"))
			nhlt = atol(v), i++;
		else if (!strcmp(a, "--out"))
			nout = atol(v), i++;
		else if (!strcmp(a, "--flushes"))
			flush_target = atol(v), i++;
		else if (!strcmp(a, "--period-us"))
			period_us = atoi(v), i++;
		else if (!strcmp(a, "--timeout"))
			timeout = atof(v), i++;
		else if (!strcmp(a, "--hold"))
			hold = v, i++;
		else if (!strcmp(a, "--go"))
			go = v, i++;
		else if (!strcmp(a, "--run"))
			run_file = v, i++;
		else if (!strcmp(a, "--phased"))
			flush_go = 0;
		else {
			fprintf(stderr, "usage: kvmguest [--cpu N] [--hk M] [--hlt K] [--out K] [--flushes F] [--period-us P] [--timeout S] [--hold FILE] [--go FILE] [--run FILE] [--phased]\n");
			return 2;
		}
	}
	pin(hk);
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		die("KVM_CREATE_VM");
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap guest memory");
	memcpy((void *)(mem + CODE_AT), guest_start, guest_end - guest_start);
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = MEM_SIZE,
		.userspace_addr = (uint64_t)(uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region))
		die("KVM_SET_USER_MEMORY_REGION");
	vcpu_fd = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu_fd < 0)
		die("KVM_CREATE_VCPU");
	int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run");
	struct kvm_sregs sregs;
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs))
		die("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs))
		die("KVM_SET_SREGS");
	struct kvm_regs regs = { .rip = CODE_AT, .rflags = 2 };
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs))
		die("KVM_SET_REGS");

	while (go && access(go, F_OK))
		usleep(10000);
	if (pthread_create(&vt, NULL, vcpu_thread, NULL))
		die("pthread_create");
	double deadline = now() + timeout;
	while (!atomic_load(&vcpu_tid))
		usleep(1000);
	printf("pid=%d vcpu_tid=%d\n", getpid(), atomic_load(&vcpu_tid));
	fflush(stdout);
	if (pthread_create(&ft, NULL, flush_thread, NULL))
		die("pthread_create");

	int ok = 1;
	for (long i = 0; ok && i < nhlt; i++)
		ok = request(CMD_HLT, &hlts, deadline) == 0;
	for (long i = 0; ok && i < nout; i++)
		ok = request(CMD_OUT, &outs, deadline) == 0;
	if (ok && !atomic_load(&flush_go)) {
		printf("{\"phase\":\"guest\",\"hlt\":%ld,\"out\":%ld}\n", atomic_load(&hlts),
		       atomic_load(&outs));
		fflush(stdout);
		atomic_store(&flush_go, 1);
	}
	while (ok && atomic_load(&flushes) < flush_target) {
		if (now() > deadline)
			ok = 0;
		usleep(1000);
	}
	atomic_store(&stop, 1);
	pthread_join(ft, NULL);
	/* One more exit for the vCPU thread to see `stop`. */
	mem[CMD_AT] = CMD_OUT;
	pthread_join(vt, NULL);
	printf("{\"pid\":%d,\"vcpu_tid\":%d,\"cpu\":%d,\"hk\":%d,\"hlt\":%ld,\"out\":%ld,\"other\":%ld,\"flushes\":%ld,\"ok\":%s}\n",
	       getpid(), atomic_load(&vcpu_tid), cpu, hk, atomic_load(&hlts), atomic_load(&outs),
	       atomic_load(&others), atomic_load(&flushes), ok ? "true" : "false");
	fflush(stdout);
	while (hold && access(hold, F_OK))
		usleep(10000);
	return ok ? 0 : 1;
}
