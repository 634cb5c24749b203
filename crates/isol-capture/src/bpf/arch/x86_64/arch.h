/* SPDX-License-Identifier: GPL-2.0 */
/* x86-64's facts for capture.bpf.c; build.rs puts this directory (with
 * its vmlinux.h) on the include path for the target architecture, so a
 * port adds arch/<arch>/ beside it. */
#ifndef ISOL_ARCH_H
#define ISOL_ARCH_H

/* At user_exit, a syscall's entry: syscall entry sets ax = -ENOSYS and
 * orig_ax = nr; an interrupt or exception leaves orig_ax at -1 and the
 * user's ax in place. */
#define ARCH_SYSCALL_NR(regs) BPF_CORE_READ(regs, orig_ax)
#define ARCH_IS_SYSCALL_ENTRY(regs, nr) ((nr) >= 0 && BPF_CORE_READ(regs, ax) == -38 /* -ENOSYS */)
/* The third syscall argument (the arming syscall's magic). */
#define ARCH_SYSCALL_ARG3(regs) BPF_CORE_READ(regs, dx)

/* The interrupt and IPI entry points are the irq_vectors tracepoints
 * (local_timer, call_function, call_function_single, reschedule,
 * irq_work), each with its vector number; reschedule IPIs are sent by
 * native_smp_send_reschedule. The programs for them are in capture.bpf.c
 * and their hooks in src/arch/x86_64.rs. */

#endif
