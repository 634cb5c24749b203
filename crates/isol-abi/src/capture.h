/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Everything capture.bpf.c shares with Rust: structs, enums, constants.
 * The Rust side (crate isol-abi) is generated from this file by bindgen
 * and checked by bytemuck: keep every field naturally aligned with
 * explicit padding, and define every shared value here, once.
 */
#ifndef ISOL_CAPTURE_H
#define ISOL_CAPTURE_H

#define MAX_CHAIN 8
#define HIST_BUCKETS 32
#define WATCH_WORDS 128 /* 8192 CPUs */
#define TASK_COMM 16

enum isol_class {
	CLASS_NONE = 0,
	CLASS_IRQ = 1,
	CLASS_IPI = 2,
	CLASS_TIMER = 3,
	CLASS_SOFTIRQ = 4,
	CLASS_NMI = 5,
	CLASS_EXCEPTION = 6,
	CLASS_SYSCALL = 7,
	CLASS_SCHED = 8,
	CLASS_WORKQUEUE = 9,
	CLASS_VMEXIT = 10,      /* the guest of a KVM vCPU thread left for the host */
};

/* What exactly, within a class. `arg`/`addr` of struct cause say more. */
enum isol_kind {
	KIND_NONE = 0,
	KIND_DEVICE_IRQ = 1,      /* arg: irq number */
	KIND_LOCAL_TIMER = 2,
	KIND_TIMER_FN = 3,        /* addr: timer_list callback */
	KIND_HRTIMER_FN = 4,      /* addr: hrtimer callback */
	KIND_CALL_FUNCTION = 5,
	KIND_CALL_FUNCTION_SINGLE = 6,
	KIND_RESCHEDULE = 7,
	KIND_IRQ_WORK = 8,
	KIND_CSD_FUNCTION = 9,    /* addr: function the IPI ran */
	KIND_SOFTIRQ = 10,        /* arg: vector */
	KIND_NMI = 11,            /* addr: handler */
	KIND_PAGE_FAULT = 12,     /* addr: fault address, arg: error code */
	KIND_TLB_FLUSH = 13,      /* arg: reason */
	KIND_SYSCALL = 14,        /* arg: syscall number */
	KIND_PREEMPT = 15,        /* arg: pid of the task that ran */
	KIND_WORK = 16,           /* addr: work function */
	KIND_KERNEL_ENTRY = 17,   /* user->kernel with no other cause seen */
	KIND_ISOL_SIGNAL = 18,    /* isol's own strict-mode signal irq_work */
	KIND_VM_EXIT = 19,        /* arg: exit reason, addr: enum isol_vm_isa */
	KIND_VM_USERSPACE = 20,   /* KVM_RUN returned to the VMM; arg: KVM_EXIT_* */
	KIND_MAX = 21,
};

/* Which hardware virtualization a kvm_exit reason belongs to: the
 * kernel's KVM_ISA_VMX/KVM_ISA_SVM (the tracepoint's `isa` argument). */
enum isol_vm_isa {
	VM_ISA_UNKNOWN = 0,
	VM_ISA_VMX = 1,
	VM_ISA_SVM = 2,
};
/* An exit whose reason could not be read (SVM's own codes end at -1, ERR). */
#define VM_REASON_UNKNOWN 0xfffffffeu

/* Where the kvm_exit raw tracepoint keeps the exit reason, set by user
 * space when it attaches (the layout is the kvm modules', known only once
 * they are loaded). */
struct kvm_layout {
	__u32 reason_in_arg0; /* before 5.16: kvm_exit(reason, vcpu, isa) */
	__u32 pad;
	__u64 svm_vmcb_off;   /* offsetof(struct vcpu_svm, vmcb), 0: unknown */
	__u64 vmx_reason_off; /* offsetof(struct vcpu_vmx, exit_reason), 0: unknown */
	/* Host-caused exits (an interrupt or NMI for the host, KVM's own
	 * windows), the ones strict mode's CLASS_VMEXIT breaks on: a bit per
	 * reason, from user space's table (vmexit.rs). SVM: bit c - 0x40 for
	 * exit code c in 0x40..0x7f; VMX: bit c for basic reason c < 64. */
	__u64 svm_host_reasons;
	__u64 vmx_host_reasons;
};

/* arg of a KIND_CSD_FUNCTION cause: what was queued (the csd's type), and
 * for a remote wake-up the woken task (arg = CSD_ARG_TTWU | pid). */
#define CSD_ARG_IRQ_WORK 0x40000000u
#define CSD_ARG_TTWU 0x80000000u

struct cause {
	__u8 class;
	__u8 kind;
	__u16 pad;
	__u32 arg;
	__u64 addr;
};

/* The context the sender ran in, from its preempt count: the stack may
 * be missing (a stack table collision), this never is. */
enum isol_sender_context {
	SENDER_CTX_UNKNOWN = 0,
	SENDER_CTX_TASK = 1,
	SENDER_CTX_SOFTIRQ = 2,
	SENDER_CTX_HARDIRQ = 3,
	SENDER_CTX_NMI = 4,
};

struct sender {
	__u64 callsite;
	__u64 func;
	__u64 sent_ns; /* when it was queued (CLOCK_MONOTONIC): after the
			* target's activation, or not a break */
	__s32 stack_id; /* into `stacks`, <0 if none */
	__u32 cpu;
	__u32 pid;
	__u8 valid;
	__u8 context; /* enum isol_sender_context */
	__u8 stack;   /* enum isol_sender_stack: why stack_id is <0 */
	__u8 pad;
	__u8 comm[TASK_COMM];
};

/* Whether a sender's stack was taken (capture.bpf.c, want_stack). */
enum isol_sender_stack {
	SENDER_STACK_TAKEN = 0,   /* stack_id, or <0: capture failed (DROP_STACK) */
	SENDER_STACK_SAMPLED = 1, /* not taken by choice (DROP_STACK_SAMPLED):
				   * the IPI is counted with its callsite,
				   * function and task all the same */
};

/* Record flags */
#define REC_EXACT (1u << 0)       /* bounded by context tracking */
#define REC_TRUNCATED (1u << 1)   /* more than MAX_CHAIN causes */
#define REC_STRICT_BREAK (1u << 2)/* this entry broke a strict task */
#define REC_NO_DURATION (1u << 3) /* point event (fault outside nohz_full) */
#define REC_IDLE (1u << 4)        /* the CPU was idle */
#define REC_VM_USERSPACE (1u << 5)/* a VM exit handed to the VMM: it ends at the return to user space */
#define REC_PRE_ACTIVATION (1u << 6)/* an IPI queued before the interrupted task's activation:
				     * not a break (the race raised against the strict-mode patch) */
#define REC_IPI_BREAK (1u << 7)     /* a break by an IPI queued after the activation:
				     * `sender` is that IPI's (not the episode's first) */

/* One interruption. */
struct record {
	__u64 start_ns; /* CLOCK_MONOTONIC */
	__u64 duration_ns;
	__u32 cpu;
	__u32 tid;
	__u32 tgid;
	__u32 flags;
	__u32 nchain;
	__u32 pad;
	__u8 comm[TASK_COMM];
	struct cause primary; /* class/kind of chain[0], addr/arg refined */
	struct cause chain[MAX_CHAIN];
	struct sender sender;  /* of the first IPI of the interruption */
	/* Of another IPI in it: a second one nested or queued in the same
	 * vector, or a second sending of a vector taken once (the kernel
	 * coalesces a reschedule sent twice before the target takes it). A
	 * third is counted (DROP_EXTRA_SENDER), not kept. */
	struct sender sender2;
};

/* Aggregation per CPU x primary cause. */
struct agg_key {
	__u32 cpu;
	__u8 class;
	__u8 kind;
	__u16 pad;
	__u32 arg;
	__u32 pad2;
	__u64 addr;
};

struct agg_val {
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	__u64 hist[HIST_BUCKETS]; /* log2(ns) */
};

/* Counters of everything dropped; index into the `drops` per-CPU array. */
enum isol_drop {
	DROP_RINGBUF = 0,   /* ring buffer full: record lost, aggregate kept */
	DROP_AGG = 1,       /* aggregation map full: counted here only */
	DROP_STACK = 2,     /* sender stack not captured */
	DROP_SENDER = 3,    /* sender table full */
	DROP_NESTING = 4,   /* unbalanced entry/exit seen (recovered) */
	DROP_DISPLACED = 5, /* preempted-task table full: that wait not timed */
	DROP_STACK_SAMPLED = 6, /* sender stack not taken by choice (sampled) */
	DROP_EXTRA_SENDER = 7, /* an IPI's sender its interruption had no room for */
	DROP_MAX = 8,
};

/* Registration of an isolated task, keyed by tid (or by
 * tgid|STRICT_KEY_PROCESS with STRICT_PROCESS). signal != 0: strict, the
 * first break signals the task and ends the registration; signal == 0:
 * breaks are only counted. */
#define STRICT_KEY_PROCESS 0x80000000u
#define STRICT_PROCESS (1u << 0)
#define STRICT_INHERIT (1u << 1) /* fork/clone children are registered too */
/* The task's own entries do not count yet: it is still talking to its
 * watcher. It arms itself with getcpu(0, 0, STRICT_ARM_MAGIC), a syscall
 * that ignores its third argument. */
#define STRICT_PENDING (1u << 2)
#define STRICT_ARM_NR 309 /* __NR_getcpu on x86-64 */
#define STRICT_ARM_MAGIC 0x15015015ULL
/* The explicit exit (isol_deactivate): getcpu(0, 0, STRICT_LEAVE_MAGIC)
 * ends the calling thread's registration (or its process's) at once, so
 * that what deactivation then does in the kernel is never a break, as the
 * task isolation series exempts its explicit prctl. */
#define STRICT_LEAVE_MAGIC 0x15015016ULL
struct strict_cfg {
	__u32 signal;
	__u32 flags;
	__u32 classes; /* bit per enum isol_class that breaks isolation */
	__u32 page;    /* status page: its slot in `pages` plus one, 0 if none */
	__u64 progress_addr; /* user address of a u64 read at break time, or 0 */
	/* When isolation began (CLOCK_MONOTONIC): the registration, or the
	 * arming syscall of a pending one. An IPI queued before it is not a
	 * break. 0 while pending. */
	__u64 active_ns;
};

struct strict_break {
	__u64 ts_ns;
	__u64 progress; /* value at progress_addr when the break happened */
	__u32 cpu;
	__u32 tid;
	__u32 signal;
	__u32 count; /* breaks so far (this one included) */
	struct cause cause;
	/* The whole interruption that broke it, completed as it unfolds (the
	 * chain grows, the sender of an IPI is known at its function): what
	 * the task is told, as a record would tell it. */
	__u32 nchain;
	__u32 flags; /* REC_* */
	struct cause chain[MAX_CHAIN];
	struct sender sender;
};

/* A registered thread's status page: an mmapable BPF array of one
 * element, which the task maps read-only and reads with plain loads (no
 * system call, no signal). The capture writes it at the task's kernel
 * entries; `seq` is odd while it does (read again until even and equal). */
#define MAX_PAGES 1024
enum isol_page_state {
	PAGE_NONE = 0,
	PAGE_PENDING = 1, /* registered; the task's own entries not armed yet */
	PAGE_ACTIVE = 2,
	PAGE_BROKEN = 3,  /* a strict break: signalled, registration ended */
	PAGE_ENDED = 4,   /* left isolation (the explicit exit) */
};
struct isol_page {
	__u32 seq;
	__u32 state; /* enum isol_page_state */
	__u32 tid;
	__u32 breaks;        /* counted so far */
	__u64 last_entry_ns; /* the task's last kernel entry seen (CLOCK_MONOTONIC) */
	__u64 break_ns;      /* the last break */
	__u64 active_ns;     /* isolation began (strict_cfg.active_ns) */
	__u32 break_cpu;
	__u32 nchain;
	__u32 flags; /* REC_* of the breaking interruption */
	__u32 pre_activation; /* IPIs that reached it while it activated, or
			       * queued before its activation: not breaks */
	struct cause cause; /* the last break's primary cause */
	struct cause chain[MAX_CHAIN];
	struct sender sender; /* valid: the IPI's sender was seen */
};

/* Per CPU: the tick's last stop and last failure to stop (timer:tick_stop),
 * for the task isolation API's wait for a stopped tick. */
struct tick_state {
	__u64 stop_ts_ns;
	__u64 fail_ts_ns;
	__u32 fail_dependency; /* TICK_DEP_MASK_* of the last failure */
	__u32 fails;
};

/* Sizes the BPF side relies on (the Rust side checks its own layout). */
_Static_assert(sizeof(struct cause) == 16, "cause layout");
_Static_assert(sizeof(struct sender) == 56, "sender layout");
_Static_assert(sizeof(struct record) == 312, "record layout");
_Static_assert(sizeof(struct agg_key) == 24, "agg_key layout");
_Static_assert(sizeof(struct agg_val) == 24 + 8 * HIST_BUCKETS, "agg_val layout");
_Static_assert(sizeof(struct strict_cfg) == 32, "strict_cfg layout");
_Static_assert(sizeof(struct strict_break) == 240, "strict_break layout");
_Static_assert(sizeof(struct tick_state) == 24, "tick_state layout");
_Static_assert(sizeof(struct isol_page) == 256, "isol_page layout");
_Static_assert(sizeof(struct kvm_layout) == 40, "kvm_layout layout");

#endif
