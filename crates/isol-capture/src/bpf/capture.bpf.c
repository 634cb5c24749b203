// SPDX-License-Identifier: GPL-2.0
/*
 * isol capture: every interruption of the watched CPUs, with its cause.
 *
 * These programs run ON the CPU the user protects, so they stay small:
 * per-CPU state, no loops over unbounded data, no wakeups (ring buffer
 * records are submitted with BPF_RB_NO_WAKEUP and read by a poller on a
 * housekeeping CPU), and nothing is dropped without being counted.
 *
 * An "episode" is one interruption: it opens at the first handler entry
 * (or at context_tracking:user_exit on nohz_full CPUs, which gives the
 * exact user/kernel boundary), collects the nested causes in a chain, and
 * closes when the outermost handler exits (or at user_enter).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "capture.h"
#include "arch.h"

char LICENSE[] SEC("license") = "GPL";

/* include/linux/sched.h: #defines, so not in vmlinux.h; stable for ages. */
#define PF_KTHREAD 0x00200000
#define TASK_RUNNING 0

/* Set by the loader before load. */
const volatile __u64 watch_mask[WATCH_WORDS] = {};
const volatile __u32 target_tgid = 0;   /* --pid mode: follow this process */
const volatile __u8 want_syscalls = 0;  /* report the task's own syscalls */

/* Non-zero while any strict registration may exist: skips two hash
 * lookups per entry otherwise. User space owns it. */
__u32 strict_count = 0;

/* Set by user space once every program is attached: an episode whose
 * entry fired before its exit program was attached would never balance. */
__u32 armed = 0;

struct cpu_state {
	__u64 start;
	__u32 depth;
	__u32 flags;
	__u32 nchain;
	__u32 tid;
	__u32 tgid;
	__u8 exact;     /* opened by user_exit: closes at user_enter */
	__u8 sched;     /* opened by a context switch: closes on switch back */
	__u8 isol_irq_work; /* our own signal's irq_work is pending */
	__u8 vm;        /* opened by kvm_exit: closes at kvm_entry */
	__u32 sched_prev; /* pid switched away from */
	__u32 break_tid;  /* the task this episode broke (not always `tid`:
			   * a preemption episode belongs to the task
			   * switched away from) */
	__u32 break_page; /* its status page (strict_cfg.page), 0 if none */
	/* A vCPU thread in its guest on this CPU (since kvm_entry), and the
	 * exit opened by an interrupt before kvm_exit named it: where
	 * kvm_exit fires after the host served the interrupt (5.10, 6.1). */
	__u32 guest_tid;
	__u8 vm_pending;
	/* A registered task's IPI whose break is decided at the handler's
	 * end, once its senders (and when they queued it) are known. */
	__u8 defer;
	__u8 defer_unknown; /* a function of it has no known sender */
	__u8 own_sender;    /* the break's sender is break_sender, not the episode's */
	/* Where in the chain the break's cause is (and the deferred IPI's):
	 * the break names that handler, refined by the ones nested in it,
	 * not the episode's first (an IPI landing in a softirq, or in the
	 * task's own system call, broke it; the softirq did not). */
	__u8 break_at;
	__u8 defer_at;
	__u8 pad2[2];
	__u64 defer_sent_ns;  /* the latest queueing among its senders */
	struct cause defer_cause;
	struct sender break_sender; /* that latest sender: the break's, if it is one */
	struct sender note; /* a sender as read once (see note_sent) */
	__u64 sched_task; /* its task_struct (to see it migrate away) */
	char comm[TASK_COMM];
	struct cause chain[MAX_CHAIN];
	struct sender sender;
	struct sender sender2; /* another IPI's (struct record) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct agg_key);
	__type(value, struct agg_val);
} agg SEC(".maps");

/* Per CPU, how many times each kind of handler began (enum isol_kind):
 * the vectors' counts, to hold against /proc/interrupts. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KIND_MAX);
	__type(key, __u32);
	__type(value, __u64);
} kind_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* Sender stacks. Without BPF_F_REUSE_STACKID a stack whose hash bucket
 * holds another stack is not captured (counted as DROP_STACK), so the
 * table is sized well above the few hundred distinct sender stacks a busy
 * run produces (a rare stack colliding made it vanish every time); 24
 * frames cover the IPI senders' paths (~6 MiB of kernel memory). */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 32768);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 24 * sizeof(__u64));
} stacks SEC(".maps");

/* Which sender stacks are taken (want_stack). A stack costs the sending
 * CPU about 4 us, four times the rest of naming an IPI, and a bounded
 * depth saves little (the unwind's setup dominates: 4 frames cost 2.1 us
 * against 3.3 us for all, bench/RESULTS.md); an IPI storm repeats one
 * path thousands of times a second. So, per (callsite, function, task,
 * context), the first STACK_BUDGET IPIs of every STACK_WINDOW_NS take
 * their stack, then one in STACK_ODDS at random (a sender whose paths
 * alternate in step with the window, as a periodic one's do, shows them
 * all), the others go without: never another IPI's stack (the
 * callsite is too generic a key to tell paths apart, text patching from
 * one task comes from several), but marked SENDER_STACK_SAMPLED and
 * counted (DROP_STACK_SAMPLED). Each IPI is still counted under its
 * callsite, function and task; a new key always gets its stack. Taken
 * for every IPI: with all_stacks (census, noise: their tables key IPIs
 * by stack), while strict registrations may exist (a break's record
 * carries its sender's stack), and where only the stack tells the
 * callsite (the fentry hooks of kernels before 6.4). Where the preempt
 * count is unknown, a sampled sender's context is then unknown too. */
const volatile __u8 all_stacks = 0;
#define STACK_WINDOW_NS (100 * 1000 * 1000ULL)
#define STACK_BUDGET 16
#define STACK_ODDS 256 /* a power of two */

struct stack_key {
	__u64 callsite;
	__u64 func;
	__u32 pid;
	__u32 context;
};

struct stack_window {
	__u64 start_ns;
	__u64 taken;
};

/* LRU: a key evicted is new again, and takes its stack. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct stack_key);
	__type(value, struct stack_window);
} stack_windows SEC(".maps");

/* The key this CPU last sent under, with its window: an IPI storm
 * repeats one key, and a per-CPU array spares the sender the LRU's
 * hashing (most of want_stack's cost) and a cache line other CPUs
 * write. The window goes back to the LRU when another key takes the slot
 * (racing CPUs of one key may take more stacks than its budget, never
 * fewer). */
struct stack_recent {
	struct stack_key key;
	struct stack_window w;
	/* This CPU's sampling generator (xorshift64): bpf_get_prandom_u32()
	 * is a helper call, paid by nearly every sender of a storm (past its
	 * budget), and sampling needs no better than a few shifts. */
	__u64 rnd;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_recent);
} stack_recent SEC(".maps");

/* Sender of a queued csd, keyed by the csd pointer (sender side writes,
 * target side reads and deletes). LRU: remote irq_work is queued like a
 * csd but runs without csd_function_entry, so its entries are never read;
 * the oldest are evicted instead of filling the table. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct sender);
} csd_senders SEC(".maps");

/* The plain IPIs (no csd: reschedule, irq_work) sent to each CPU and not
 * yet taken there: the last and the one before. Two: a vector sent twice
 * before its target takes it is handled once, and both senders caused it
 * (under TCG a signal's kick and the fair server's often coalesce). */
struct ipi_slot {
	struct sender last;
	struct sender prev;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct ipi_slot);
} ipi_senders SEC(".maps");

/* Last csd queued for each CPU, for a call-function IPI none of whose
 * csds is traced on the target. A slot apart from the plain IPIs': a
 * csd queued between a reschedule IPI's sending and its handling (a
 * signal's kick and a TLB flush) would take the reschedule's sender. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct sender);
} csd_last SEC(".maps");

/* Kernels without csd_queue_cpu (before 6.4): the sender of an
 * smp_call_function_many() round, keyed by the sending CPU's per-CPU csd
 * array (cfd_data.csd / cfd_data.pcpu, the same for every target): the
 * csd CPU c receives lives at that pointer plus __per_cpu_offset[c]. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct sender);
} many_senders SEC(".maps");

/* Tasks on watched CPUs preempted by a user task, by tid, until they run
 * again (as runqlat times run-queue waits). Per task, not per CPU: the
 * preempting task runs its own code meanwhile, and what interrupts it
 * there is its own story, not part of this wait (an episode open for the
 * wait would swallow it); and several tasks may wait at once. */
struct displaced {
	__u64 start;
	__u64 ran;   /* its se.sum_exec_runtime then: it ran elsewhere if that moved */
	__u32 by;    /* the task that preempted it */
	__u32 tgid;
	__u32 cpu;
	__u32 pad;
	char comm[TASK_COMM];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct displaced);
} displaced SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct strict_cfg);
} strict SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct strict_break);
} breaks SEC(".maps");

/* Status pages of registered threads, by slot (strict_cfg.page - 1): one
 * map each, so that a task given its page's descriptor can map nothing
 * but its own. User space creates them (same definition) and fills the
 * slots. */
struct page_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	/* Sizes, not types: the struct would reach BTF only as a forward
	 * declaration (it is used through pointers only). */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct isol_page));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_PAGES);
	__type(key, __u32);
	__array(values, struct page_map);
} pages SEC(".maps");

/* A break is built here, not on the stack: it holds a whole record and
 * the entry programs' frames leave no room for it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct strict_break);
} break_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tick_state);
} ticks SEC(".maps");

static __always_inline void drop(__u32 what)
{
	__u64 *c = bpf_map_lookup_elem(&drops, &what);
	if (c)
		(*c)++;
}

/* Per-CPU variables by their kallsyms addresses, which user space passes
 * in (0 when absent): CPU c's copy lives at the address plus
 * __per_cpu_offset[c]. Typed ksyms would need BTF variables (5.10's BTF
 * has none) and, like this, CONFIG_KALLSYMS_ALL (the verifier resolves
 * them through kallsyms); every distribution kernel has it. Without it
 * the preempt count is unknown and user space falls back to the stack. */
const volatile __u64 kallsyms_per_cpu_offset = 0;
const volatile __u64 kallsyms_preempt_count = 0; /* x86: 5.10-6.1, 6.15+ */
const volatile __u64 kallsyms_pcpu_hot = 0;      /* x86: 6.2-6.14 */
const volatile __u64 kallsyms_call_single_queue = 0;
const volatile __u64 kallsyms_cfd_data = 0;
const volatile __u64 kallsyms_sched_ttwu_pending = 0; /* code: always listed */
/* Walk the call-function queue at the vector (names every queued
 * function, remote irq_work and wake-ups included); set by user space
 * when the symbols above are known. Otherwise csd_function_entry. */
const volatile __u8 walk_csd_queue = 0;
/* Whether anything writes csd_last: not where csd_queue_cpu is attached
 * and the target walks its queue (6.4+ with the symbols), where the
 * call-function exits skip its lookup on the protected CPU. */
const volatile __u8 csd_last_used = 1;
/* Words of a struct cpumask worth reading (nr_cpu_ids / 64, rounded up). */
const volatile __u32 cpumask_words = 1;

struct pcpu_hot___local {
	int preempt_count;
} __attribute__((preserve_access_index));

/* This CPU's __per_cpu_offset, read once: it never changes, and the
 * sender's context and the target's queue walk need it on every IPI (a
 * per-CPU array is a few loads; bpf_probe_read_kernel() is a call). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cpu_offset SEC(".maps");

/* This CPU's __per_cpu_offset, or 0 if unknown. */
static __always_inline __u64 this_cpu_offset(void)
{
	__u32 zero = 0;
	__u64 *o = bpf_map_lookup_elem(&cpu_offset, &zero);

	if (!o || !kallsyms_per_cpu_offset)
		return 0;
	if (!*o &&
	    bpf_probe_read_kernel(o, sizeof(*o),
				  (void *)(kallsyms_per_cpu_offset +
					   bpf_get_smp_processor_id() * sizeof(__u64))))
		*o = 0;
	return *o;
}

/* This CPU's copy of a per-CPU variable found in kallsyms, or 0. */
static __always_inline __u64 kallsyms_this_cpu(__u64 sym)
{
	__u64 off;

	if (!sym)
		return 0;
	off = this_cpu_offset();
	return off ? sym + off : 0;
}

/* This CPU's preempt count, or -1 if this kernel does not say. */
static __always_inline __s64 preempt_count(void)
{
	__u64 addr = 0;
	__u32 pc;

	if (kallsyms_preempt_count)
		addr = kallsyms_this_cpu(kallsyms_preempt_count);
	else if (kallsyms_pcpu_hot && bpf_core_field_exists(struct pcpu_hot___local, preempt_count))
		addr = kallsyms_this_cpu(kallsyms_pcpu_hot) +
		       bpf_core_field_offset(struct pcpu_hot___local, preempt_count);
	if (!addr || bpf_probe_read_kernel(&pc, sizeof(pc), (void *)addr))
		return -1;
	return pc;
}

/* NMI_MASK, HARDIRQ_MASK, SOFTIRQ_OFFSET (serving a softirq, not merely
 * with softirqs disabled) of include/linux/preempt.h. */
static __always_inline __u8 sender_context(void)
{
	__s64 pc = preempt_count();

	if (pc < 0)
		return SENDER_CTX_UNKNOWN;
	if (pc & 0x00f00000)
		return SENDER_CTX_NMI;
	if (pc & 0x000f0000)
		return SENDER_CTX_HARDIRQ;
	if (pc & 0x00000100)
		return SENDER_CTX_SOFTIRQ;
	return SENDER_CTX_TASK;
}

static __always_inline bool cpu_watched(__u32 cpu)
{
	if (!armed)
		return false;
	__u32 w = cpu >> 6;

	/* Keep clang from folding the check into a form the verifier
	 * cannot follow. */
	barrier_var(w);
	if (w >= WATCH_WORDS)
		return false;
	return watch_mask[w] & (1ULL << (cpu & 63));
}

static __always_inline bool watched_here(void)
{
	if (!armed)
		return false;
	if (target_tgid)
		return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
	return cpu_watched(bpf_get_smp_processor_id());
}

/* The current task's ids (tgid << 32 | pid) and name: one helper call
 * and plain loads where bpf_get_current_task_btf() exists (5.11+, set by
 * user space), two helper calls before. Each call's return is paid in
 * full under return-thunk mitigations (AMD's SRSO), on entry paths and
 * the sender's alike. */
const volatile __u8 task_btf = 0;

static __always_inline __u64 current_ids(char *comm)
{
	if (task_btf) {
		struct task_struct *t = bpf_get_current_task_btf();

		__builtin_memcpy(comm, t->comm, TASK_COMM);
		return (__u64)t->tgid << 32 | (__u32)t->pid;
	}
	bpf_get_current_comm(comm, TASK_COMM);
	return bpf_get_current_pid_tgid();
}

static __always_inline struct cpu_state *cur_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&state, &zero);
}

static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 r = 0;
	/* Unrolled binary search: constant cost, verifier friendly. */
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r < HIST_BUCKETS ? r : HIST_BUCKETS - 1;
}

static __always_inline struct isol_page *page_at(__u32 page)
{
	__u32 slot = page - 1, zero = 0;
	void *inner;

	if (!page)
		return NULL;
	inner = bpf_map_lookup_elem(&pages, &slot);
	if (!inner)
		return NULL;
	return bpf_map_lookup_elem(inner, &zero);
}

/* The current task's registration (its thread's, else its process's),
 * and the key it is under. */
static __always_inline struct strict_cfg *registration(__u32 *key)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct strict_cfg *cfg;

	*key = (__u32)id;
	cfg = bpf_map_lookup_elem(&strict, key);
	if (cfg)
		return cfg;
	*key = (id >> 32) | STRICT_KEY_PROCESS; /* whole-process registration */
	return bpf_map_lookup_elem(&strict, key);
}

/* `class` broke the current task's isolation: record the break, signal
 * it now (before the return to user, so it runs no further instruction)
 * if strict, and clear its registration. */
static __always_inline bool strict_break_now(struct cpu_state *st, struct strict_cfg *cfg,
					     __u32 key, struct isol_page *pg, __u64 now, __u32 at,
					     __u8 class, __u8 kind, __u32 arg, __u64 addr)
{
	struct strict_break *b, *prev;
	__u32 zero = 0, tid = (__u32)bpf_get_current_pid_tgid();

	b = bpf_map_lookup_elem(&break_scratch, &zero);
	if (!b)
		return false;
	prev = bpf_map_lookup_elem(&breaks, &tid);
	/* A strict process registration: this thread already had its signal. */
	if (prev && prev->signal && cfg->signal && key != tid)
		return false;
	__builtin_memset(b, 0, sizeof(*b));
	b->count = prev ? prev->count + 1 : 1;
	b->ts_ns = now;
	b->cpu = bpf_get_smp_processor_id();
	b->tid = tid;
	b->signal = cfg->signal;
	b->cause.class = class;
	b->cause.kind = kind;
	b->cause.arg = arg;
	b->cause.addr = addr;
	/* The chain so far is this one entry; the episode completes it. */
	b->nchain = 1;
	b->chain[0] = b->cause;
	if (cfg->progress_addr)
		bpf_probe_read_user(&b->progress, sizeof(b->progress),
				    (void *)cfg->progress_addr);
	bpf_map_update_elem(&breaks, &tid, b, BPF_ANY);
	if (st) {
		st->flags |= REC_STRICT_BREAK;
		/* Until decide_deferred says otherwise, the episode's sender:
		 * one episode may hold several breaks (it can outlast one
		 * activation on a shared CPU). */
		st->flags &= ~REC_IPI_BREAK;
		st->own_sender = 0;
		st->break_tid = tid;
		st->break_page = key == tid ? cfg->page : 0;
		st->break_at = at;
	}
	if (pg) {
		__sync_fetch_and_add(&pg->seq, 1);
		pg->state = b->signal ? PAGE_BROKEN : PAGE_ACTIVE;
		pg->breaks = b->count;
		pg->break_ns = now;
		pg->break_cpu = b->cpu;
		pg->cause = b->cause;
		pg->nchain = 1;
		pg->chain[0] = b->cause;
		pg->flags = 0;
		pg->sender.valid = 0;
		__sync_fetch_and_add(&pg->seq, 1);
	}
	if (!b->signal)
		return true; /* persistent or one-shot: counted, still registered */
	bpf_send_signal_thread(b->signal);
	/* One break per activation: the task must re-register. Per-thread
	 * registrations are removed; a process registration stays for its
	 * other threads but this thread is recorded as broken. */
	if (key == tid)
		bpf_map_delete_elem(&strict, &key);
	/* From hard-IRQ context the signal is delivered by an irq_work
	 * self-IPI: that one is isol's, not the application's. */
	if (st)
		st->isol_irq_work = 1;
	return true;
}

/* Strict mode: if the current task is registered and `class` breaks its
 * isolation, it is a break (see strict_break_now), except an IPI queued
 * before the task's activation, decided at the handler's end. `at` is the
 * cause's index in the episode's chain, at most MAX_CHAIN (not in it). */
static __always_inline void strict_check(struct cpu_state *st, __u32 at, __u8 class, __u8 kind,
					 __u32 arg, __u64 addr)
{
	struct strict_cfg *cfg;
	__u32 key;

	if (!strict_count)
		return;
	cfg = registration(&key);
	if (!cfg)
		return;
	struct isol_page *pg = key == (__u32)bpf_get_current_pid_tgid() ? page_at(cfg->page) : NULL;
	__u64 now = bpf_ktime_get_ns();

	if (pg)
		pg->last_entry_ns = now;
	if (class == CLASS_SYSCALL && arg == STRICT_ARM_NR && addr == STRICT_LEAVE_MAGIC) {
		/* The explicit exit: never a break, in any mode. */
		bpf_map_delete_elem(&strict, &key);
		if (pg)
			pg->state = PAGE_ENDED;
		return;
	}
	/* The arming call, seen once armed: the same syscall again where both
	 * context tracking and sys_enter see it. Never a break. */
	if (!(cfg->flags & STRICT_PENDING) && class == CLASS_SYSCALL &&
	    arg == STRICT_ARM_NR && addr == STRICT_ARM_MAGIC)
		return;
	if (cfg->flags & STRICT_PENDING) {
		if (class == CLASS_SYSCALL && arg == STRICT_ARM_NR && addr == STRICT_ARM_MAGIC) {
			cfg->flags &= ~STRICT_PENDING;
			cfg->active_ns = now;
			if (pg) {
				__sync_fetch_and_add(&pg->seq, 1);
				pg->active_ns = now;
				pg->state = PAGE_ACTIVE;
				__sync_fetch_and_add(&pg->seq, 1);
			}
		}
		/* Not active yet (the task is still in its activation call):
		 * nothing is a break. An IPI here is counted: the task learns
		 * that its activation raced with one. */
		if (pg && class == CLASS_IPI)
			__sync_fetch_and_add(&pg->pre_activation, 1);
		return;
	}
	/* A registration made active at once: user space stamped it. */
	if (pg && !pg->active_ns)
		pg->active_ns = cfg->active_ns;
	if (!(cfg->classes & (1u << class)))
		return;
	/* An IPI that a CPU queued before the task's activation (a TLB flush
	 * in flight, a csd queued earlier) is not a break. When it was queued
	 * is known once its senders are, later in this handler: decide at
	 * its end (decide_deferred), still before the return to user. Not
	 * irq_work: a local one has no sender to tell. */
	if (st && !st->defer && class == CLASS_IPI &&
	    (kind == KIND_CALL_FUNCTION || kind == KIND_CALL_FUNCTION_SINGLE ||
	     kind == KIND_RESCHEDULE)) {
		st->defer = 1;
		st->defer_unknown = 0;
		st->defer_sent_ns = 0;
		st->defer_at = at;
		st->defer_cause.class = class;
		st->defer_cause.kind = kind;
		st->defer_cause.arg = arg;
		st->defer_cause.addr = addr;
		return;
	}
	strict_break_now(st, cfg, key, pg, now, at, class, kind, arg, addr);
}

/* A sender of the IPI being decided: the latest queueing counts. */
static __always_inline void note_sent(struct cpu_state *st, struct sender *s)
{
	if (!st->defer)
		return;
	/* Read once: an LRU map's element may be reused for another key as
	 * the sender's CPU updates it, and the verdict and the sender the
	 * break names must be the same data. */
	__builtin_memcpy(&st->note, s, sizeof(*s));
	if (st->note.sent_ns > st->defer_sent_ns) {
		st->defer_sent_ns = st->note.sent_ns;
		__builtin_memcpy(&st->break_sender, &st->note, sizeof(*s));
	}
}

/* The deferred IPI's verdict: queued (by every sender seen) before the
 * activation, it is reported as pre-activation; otherwise, or with a
 * sender unknown, it is a break. */
static __always_inline void decide_deferred(struct cpu_state *st)
{
	struct strict_cfg *cfg;
	struct isol_page *pg;
	__u32 key;

	if (!st->defer)
		return;
	st->defer = 0;
	cfg = registration(&key);
	if (!cfg || (cfg->flags & STRICT_PENDING))
		return;
	pg = key == (__u32)bpf_get_current_pid_tgid() ? page_at(cfg->page) : NULL;
	if (!st->defer_unknown && st->defer_sent_ns && st->defer_sent_ns < cfg->active_ns) {
		st->flags |= REC_PRE_ACTIVATION;
		if (pg)
			__sync_fetch_and_add(&pg->pre_activation, 1);
		return;
	}
	/* The break names this IPI's sender, not the episode's first (when
	 * that sender decided it). */
	if (strict_break_now(st, cfg, key, pg, bpf_ktime_get_ns(), st->defer_at, st->defer_cause.class,
			     st->defer_cause.kind, st->defer_cause.arg, st->defer_cause.addr) &&
	    !st->defer_unknown && st->defer_sent_ns) {
		st->own_sender = 1;
		st->flags |= REC_IPI_BREAK;
	}
}

static __always_inline void add_cause(struct cpu_state *st, __u8 class, __u8 kind,
				      __u32 arg, __u64 addr)
{
	__u32 n = st->nchain;
	if (n >= MAX_CHAIN) {
		st->flags |= REC_TRUNCATED;
		return;
	}
	st->chain[n].class = class;
	st->chain[n].kind = kind;
	st->chain[n].arg = arg;
	st->chain[n].addr = addr;
	st->nchain = n + 1;
}

static __always_inline void open_episode(struct cpu_state *st, __u64 now)
{
	__u64 id = current_ids(st->comm);

	st->start = now;
	st->depth = 0;
	st->flags = 0;
	st->nchain = 0;
	st->exact = 0;
	st->sched = 0;
	st->vm = 0;
	st->vm_pending = 0;
	st->defer = 0;
	st->own_sender = 0;
	st->tid = (__u32)id;
	st->tgid = id >> 32;
	st->sender.valid = 0;
	st->sender2.valid = 0;
	if (st->tid == 0)
		st->flags |= REC_IDLE;
}

/* The cause at chain[at] (the primary one: chain[0]), refined by the most
 * telling detail found deeper (the function an IPI ran, a timer's
 * callback, a work item). */
static __always_inline void cause_at(struct cpu_state *st, __u32 at, struct cause *p)
{
	if (at >= MAX_CHAIN)
		return;
	*p = st->chain[at];
	for (int i = 1; i < MAX_CHAIN; i++) {
		if (i <= at)
			continue;
		if (i >= st->nchain)
			break;
		struct cause *c = &st->chain[i];
		if ((p->class == CLASS_IPI && c->kind == KIND_CSD_FUNCTION) ||
		    (p->class == CLASS_TIMER && (c->kind == KIND_TIMER_FN || c->kind == KIND_HRTIMER_FN)) ||
		    (p->class == CLASS_SCHED && c->kind == KIND_WORK)) {
			p->addr = c->addr;
			break;
		}
	}
}

static __always_inline void aggregate(__u32 cpu, struct cause *p, __u64 dur)
{
	struct agg_key k = {};
	struct agg_val *v;

	k.cpu = cpu;
	k.class = p->class;
	k.kind = p->kind;
	/* Data addresses would make one row per fault: not in the key. */
	if (p->kind != KIND_PAGE_FAULT) {
		k.arg = p->arg;
		k.addr = p->addr;
	}
	v = bpf_map_lookup_elem(&agg, &k);
	if (!v) {
		struct agg_val zero = {};
		/* Fails when full, or when another CPU inserted it first. */
		bpf_map_update_elem(&agg, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&agg, &k);
		if (!v) {
			drop(DROP_AGG);
			return;
		}
	}
	v->count++;
	v->total_ns += dur;
	if (dur > v->max_ns)
		v->max_ns = dur;
	v->hist[log2_bucket(dur)]++;
}

/* The break was noted at the first handler; as the chain completes it
 * names the cause fully (e.g. the function the IPI ran, and its sender). */
static __always_inline void refine_break(struct cpu_state *st)
{
	struct strict_break *b;
	struct isol_page *pg;
	struct cause p;

	struct sender *who = st->own_sender ? &st->break_sender : &st->sender;

	b = bpf_map_lookup_elem(&breaks, &st->break_tid);
	if (b && b->ts_ns >= st->start) {
		/* The handler that broke it: as noted if not in the chain
		 * (a truncated one). */
		p = b->cause;
		if (st->break_at < st->nchain)
			cause_at(st, st->break_at, &p);
		b->cause = p;
		b->nchain = st->nchain;
		b->flags = st->flags;
		__builtin_memcpy(b->chain, st->chain, sizeof(b->chain));
		__builtin_memcpy(&b->sender, who, sizeof(b->sender));
		pg = page_at(st->break_page);
		if (pg && pg->break_ns == b->ts_ns) {
			__sync_fetch_and_add(&pg->seq, 1);
			pg->cause = p;
			pg->nchain = st->nchain;
			pg->flags = st->flags;
			__builtin_memcpy(pg->chain, st->chain, sizeof(pg->chain));
			__builtin_memcpy(&pg->sender, who, sizeof(pg->sender));
			__sync_fetch_and_add(&pg->seq, 1);
		}
	}
}

static __always_inline void close_episode(struct cpu_state *st, __u64 now)
{
	struct record *r;
	struct cause p;
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 start = st->start;
	__u64 dur = now - start;

	/* An interrupt's programs, nested into this CPU's (e.g. between
	 * leave()'s look and here), closed it already and wrote its record
	 * (nothing is lost); one from here would begin at 0 and cover every
	 * gap. Or they opened a newer one after `now`: it stays theirs. */
	if (!start || now < start)
		return;
	if (st->nchain == 0)
		add_cause(st, CLASS_EXCEPTION, KIND_KERNEL_ENTRY, 0, 0);
	decide_deferred(st);
	if (st->flags & REC_STRICT_BREAK)
		refine_break(st);
	cause_at(st, 0, &p);
	st->start = 0;
	if (p.class == CLASS_SYSCALL && !want_syscalls)
		return;
	aggregate(cpu, &p, dur);

	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		drop(DROP_RINGBUF);
		return;
	}
	r->start_ns = start;
	r->duration_ns = dur;
	r->cpu = cpu;
	r->tid = st->tid;
	r->tgid = st->tgid;
	r->flags = st->flags | (st->exact ? REC_EXACT : 0);
	r->nchain = st->nchain;
	r->pad = 0;
	__builtin_memcpy(r->comm, st->comm, TASK_COMM);
	r->primary = p;
	__builtin_memcpy(r->chain, st->chain, sizeof(r->chain));
	__builtin_memcpy(&r->sender, &st->sender, sizeof(r->sender));
	__builtin_memcpy(&r->sender2, &st->sender2, sizeof(r->sender2));
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

static __always_inline void count_kind(__u32 kind)
{
	__u64 *c = bpf_map_lookup_elem(&kind_counts, &kind);
	if (c)
		(*c)++;
}

/* A handler begins on this CPU. */
static __always_inline void enter(__u8 class, __u8 kind, __u32 arg, __u64 addr)
{
	struct cpu_state *st;

	if (!watched_here())
		return;
	st = cur_state();
	if (!st)
		return;
	if (!st->start) {
		open_episode(st, bpf_ktime_get_ns());
		/* The guest of this thread was running: this interrupt took
		 * it out, and kvm_exit, still to come, names the exit. */
		if (st->guest_tid && st->guest_tid == st->tid) {
			st->vm = 1;
			st->vm_pending = 1;
			add_cause(st, CLASS_VMEXIT, KIND_VM_EXIT, VM_REASON_UNKNOWN, VM_ISA_UNKNOWN);
		}
	}
	st->guest_tid = 0;
	__u32 at = st->nchain;
	add_cause(st, class, kind, arg, addr);
	st->depth++;
	count_kind(kind);
	strict_check(st, at, class, kind, arg, addr);
}

/* A handler ends. */
static __always_inline void leave(void)
{
	struct cpu_state *st;

	if (!watched_here())
		return;
	st = cur_state();
	if (!st || !st->start)
		return;
	if (st->depth == 0) {
		drop(DROP_NESTING);
		return;
	}
	st->depth--;
	if (st->depth)
		return;
	decide_deferred(st);
	/* A killed strict task never reaches user_enter: name the cause now. */
	if (st->flags & REC_STRICT_BREAK)
		refine_break(st);
	if (!st->exact && !st->sched && !st->vm)
		close_episode(st, bpf_ktime_get_ns());
}

/* The state to add a detail to (timer callback, work item, TLB flush):
 * only inside an open episode on a watched CPU. Callers read their
 * argument after this check, so unwatched CPUs pay nothing for it. */
static __always_inline struct cpu_state *detail_state(void)
{
	struct cpu_state *st;

	if (!watched_here())
		return NULL;
	st = cur_state();
	return st && st->start ? st : NULL;
}

/* ---- device IRQs, softirqs ---- */

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(irq_entry, int irq, struct irqaction *action)
{
	enter(CLASS_IRQ, KIND_DEVICE_IRQ, irq, 0);
	return 0;
}

SEC("tp_btf/irq_handler_exit")
int BPF_PROG(irq_exit, int irq, struct irqaction *action, int ret)
{
	leave();
	return 0;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(softirq_entry, unsigned int vec)
{
	enter(CLASS_SOFTIRQ, KIND_SOFTIRQ, vec, 0);
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(softirq_exit, unsigned int vec)
{
	leave();
	return 0;
}

/* ---- x86 system vectors: local timer and IPIs (arch.h) ---- */

SEC("tp_btf/local_timer_entry")
int BPF_PROG(local_timer_entry, int vector)
{
	enter(CLASS_TIMER, KIND_LOCAL_TIMER, vector, 0);
	return 0;
}

SEC("tp_btf/local_timer_exit")
int BPF_PROG(local_timer_exit, int vector)
{
	leave();
	return 0;
}

/* One sending, seen twice (a csd by its pointer and by its CPU's last). */
static __always_inline bool same_send(struct sender *a, struct sender *b)
{
	return a->valid && a->sent_ns == b->sent_ns && a->cpu == b->cpu;
}

/* A sender of an IPI of the open episode, and consume it (`valid` 0: a
 * later IPI must not take it for its own): the record keeps two. */
static __always_inline void attach_sender(struct cpu_state *st, struct sender *s)
{
	note_sent(st, s);
	if (!st->sender.valid)
		__builtin_memcpy(&st->sender, s, sizeof(*s));
	else if (same_send(&st->sender, s) || same_send(&st->sender2, s))
		;
	else if (!st->sender2.valid)
		__builtin_memcpy(&st->sender2, s, sizeof(*s));
	else
		drop(DROP_EXTRA_SENDER);
	s->valid = 0;
}

/* Attach the plain IPIs sent to this CPU and not taken yet, oldest first. */
static __always_inline void plain_ipi_senders(void)
{
	struct cpu_state *st = cur_state();
	__u32 cpu = bpf_get_smp_processor_id();
	struct ipi_slot *p;

	if (!st)
		return;
	p = bpf_map_lookup_elem(&ipi_senders, &cpu);
	if (!p)
		return;
	if (p->prev.valid)
		attach_sender(st, &p->prev);
	if (p->last.valid)
		attach_sender(st, &p->last);
}

/* The last csd queued for this CPU, for a call-function IPI that named
 * none of its own (csd_last). */
static __always_inline void last_csd_sender(void)
{
	struct cpu_state *st = cur_state();
	__u32 cpu = bpf_get_smp_processor_id();
	struct sender *s;

	if (!st)
		return;
	s = bpf_map_lookup_elem(&csd_last, &cpu);
	if (s && s->valid)
		attach_sender(st, s);
}

/* The csd types of include/linux/smp_types.h. */
#define CSD_FLAG_TYPE_MASK 0xF0
#define CSD_TYPE_IRQ_WORK 0x20
#define CSD_TYPE_TTWU 0x30
#define MAX_WALK 8

/* What a queued call-single node will run, and how to name it. */
static __always_inline void csd_node_func(__u64 node, __u64 *func, __u32 *arg)
{
	struct __call_single_data *csd = (void *)node;
	__u32 type = BPF_CORE_READ(csd, node.u_flags) & CSD_FLAG_TYPE_MASK;

	*arg = 0;
	if (type == CSD_TYPE_TTWU) {
		struct task_struct *p = (void *)(node - bpf_core_field_offset(struct task_struct, wake_entry));

		*func = kallsyms_sched_ttwu_pending;
		*arg = CSD_ARG_TTWU | (BPF_CORE_READ(p, pid) & 0x3fffffff);
		return;
	}
	/* struct irq_work keeps its func where a csd keeps its own. */
	*func = BPF_CORE_READ(csd, func);
	if (type == CSD_TYPE_IRQ_WORK)
		*arg = CSD_ARG_IRQ_WORK;
}

/* Who queued `node` for this CPU: its own entry (csd_queue_cpu, or the
 * __smp_call_single_queue hook), else the smp_call_function_many round
 * whose per-CPU csd array it belongs to. */
static __always_inline struct sender *csd_sender(__u64 node, __u64 this_off)
{
	struct sender *s = bpf_map_lookup_elem(&csd_senders, &node);
	__u64 base;

	if (s && s->valid)
		return s;
	base = node - this_off;
	s = bpf_map_lookup_elem(&many_senders, &base);
	return s && s->valid ? s : NULL;
}

/* At a call-function vector, before the kernel flushes this CPU's queue:
 * every function it is about to run, with its sender. The queue only
 * grows at its head from other CPUs meanwhile, so the walk is safe. */
static __always_inline void walk_call_queue(struct cpu_state *st)
{
	__u64 off = 0, node = 0, func;
	struct sender *s;
	__u32 arg;

	if (!st || !st->start || !(off = this_cpu_offset()) ||
	    bpf_probe_read_kernel(&node, sizeof(node), (void *)(kallsyms_call_single_queue + off)))
		return;
	for (int i = 0; i < MAX_WALK && node; i++) {
		csd_node_func(node, &func, &arg);
		add_cause(st, CLASS_IPI, KIND_CSD_FUNCTION, arg, func);
		s = csd_sender(node, off);
		if (s)
			attach_sender(st, s);
		else if (st->defer)
			st->defer_unknown = 1;
		node = (__u64)BPF_CORE_READ((struct llist_node *)node, next);
	}
	if (node)
		st->flags |= REC_TRUNCATED;
}

SEC("tp_btf/call_function_entry")
int BPF_PROG(call_function_entry, int vector)
{
	enter(CLASS_IPI, KIND_CALL_FUNCTION, vector, 0);
	if (walk_csd_queue && watched_here())
		walk_call_queue(cur_state());
	return 0;
}

SEC("tp_btf/call_function_exit")
int BPF_PROG(call_function_exit, int vector)
{
	if (csd_last_used && watched_here())
		last_csd_sender();
	leave();
	return 0;
}

SEC("tp_btf/call_function_single_entry")
int BPF_PROG(call_function_single_entry, int vector)
{
	enter(CLASS_IPI, KIND_CALL_FUNCTION_SINGLE, vector, 0);
	if (walk_csd_queue && watched_here())
		walk_call_queue(cur_state());
	return 0;
}

SEC("tp_btf/call_function_single_exit")
int BPF_PROG(call_function_single_exit, int vector)
{
	if (csd_last_used && watched_here())
		last_csd_sender();
	leave();
	return 0;
}

SEC("tp_btf/reschedule_entry")
int BPF_PROG(reschedule_entry, int vector)
{
	enter(CLASS_IPI, KIND_RESCHEDULE, vector, 0);
	if (watched_here())
		plain_ipi_senders();
	return 0;
}

SEC("tp_btf/reschedule_exit")
int BPF_PROG(reschedule_exit, int vector)
{
	leave();
	return 0;
}

SEC("tp_btf/irq_work_entry")
int BPF_PROG(irq_work_entry, int vector)
{
	struct cpu_state *st;

	if (!watched_here())
		return 0;
	st = cur_state();
	if (st && st->isol_irq_work) {
		st->isol_irq_work = 0;
		enter(CLASS_IPI, KIND_ISOL_SIGNAL, vector, 0);
		return 0;
	}
	enter(CLASS_IPI, KIND_IRQ_WORK, vector, 0);
	plain_ipi_senders();
	return 0;
}

SEC("tp_btf/irq_work_exit")
int BPF_PROG(irq_work_exit, int vector)
{
	leave();
	return 0;
}

/* ---- IPI senders (run on the sending, housekeeping CPU) ---- */

/* One draw of this CPU's generator: true one time in STACK_ODDS. Seeded
 * from the clock; never 0 (xorshift's fixed point). */
static __always_inline bool sample_draw(__u64 *rnd, __u64 now)
{
	__u64 x = *rnd;

	if (!x)
		x = now | 1;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*rnd = x;
	return !((x >> 32) & (STACK_ODDS - 1));
}

/* Whether a key's window, now at `now`, takes this stack (past its
 * budget, a draw from `rnd`, or from the helper where there is none). */
static __always_inline bool window_takes(struct stack_window *w, __u64 now, __u64 *rnd)
{
	/* Racing senders of one key may both take one: more, never fewer. */
	if (now - w->start_ns >= STACK_WINDOW_NS) {
		w->start_ns = now;
		w->taken = 1;
		return true;
	}
	if (w->taken < STACK_BUDGET) {
		w->taken++;
		return true;
	}
	if (rnd)
		return sample_draw(rnd, now);
	return !(bpf_get_prandom_u32() & (STACK_ODDS - 1));
}

/* Whether this sender takes its stack (see all_stacks). */
static __always_inline bool want_stack(struct sender *s)
{
	struct stack_key k = {};
	struct stack_window *w, nw = {};
	struct stack_recent *r;
	__u32 zero = 0;
	bool take;

	/* No callsite (fentry hooks): the stack tells it. */
	if (all_stacks || strict_count || !s->callsite)
		return true;
	k.callsite = s->callsite;
	k.func = s->func;
	k.pid = s->pid;
	k.context = s->context;
	r = bpf_map_lookup_elem(&stack_recent, &zero);
	if (r && r->key.callsite == k.callsite && r->key.func == k.func && r->key.pid == k.pid &&
	    r->key.context == k.context)
		return window_takes(&r->w, s->sent_ns, &r->rnd);
	w = bpf_map_lookup_elem(&stack_windows, &k);
	if (w) {
		take = window_takes(w, s->sent_ns, r ? &r->rnd : NULL);
		nw = *w;
	} else {
		nw.start_ns = s->sent_ns;
		nw.taken = 1;
		bpf_map_update_elem(&stack_windows, &k, &nw, BPF_ANY);
		take = true;
	}
	if (r) {
		/* The key leaving the slot takes its window back to the LRU:
		 * one coming back found the window it had when it came in, and
		 * a storm's key, left and retaken between other senders'
		 * IPIs, took its budget again each time (4 times the stacks it
		 * should under bench/storm.c). */
		if (r->key.callsite) {
			w = bpf_map_lookup_elem(&stack_windows, &r->key);
			if (w)
				*w = r->w;
		}
		r->key = k;
		r->w = nw;
	}
	return take;
}

static __always_inline void fill_sender(void *ctx, struct sender *s, __u64 callsite, __u64 func)
{
	s->pid = (__u32)current_ids(s->comm);
	s->callsite = callsite;
	s->func = func;
	s->sent_ns = bpf_ktime_get_ns();
	s->cpu = bpf_get_smp_processor_id();
	s->valid = 1;
	s->context = sender_context();
	if (!want_stack(s)) {
		s->stack_id = -1;
		s->stack = SENDER_STACK_SAMPLED;
		drop(DROP_STACK_SAMPLED);
		return;
	}
	s->stack_id = bpf_get_stackid(ctx, &stacks, 0);
	if (s->stack_id < 0)
		drop(DROP_STACK);
}

/* The sender of csd `key`. Per-CPU csds are reused, so its entry is
 * usually there: once the target has taken it (`valid` 0) nobody reads it
 * and it is rewritten in place, which costs the sender far less than an
 * LRU update (a new element each time). One not taken yet (an async csd
 * queued again, irq_work) is replaced whole: the target may be reading
 * it. The target finds the csd only once the kernel has queued it, after
 * this program. */
static __always_inline void put_csd_sender(__u64 key, struct sender *s)
{
	struct sender *o = bpf_map_lookup_elem(&csd_senders, &key);

	if (o && !o->valid) {
		__builtin_memcpy(o, s, sizeof(*s));
		return;
	}
	if (bpf_map_update_elem(&csd_senders, &key, s, BPF_ANY))
		drop(DROP_SENDER);
}

/* tp_btf with its arguments read by hand: the verifier refuses a load
 * of the function-pointer one (smp_call_func_t), so the function is read
 * from the csd, as the tracepoint's callers take it (kernel/smp.c: a
 * wake-up's is sched_ttwu_pending; irq_work keeps its func where a csd
 * keeps its own). A BTF pointer is read by plain loads, where raw_tp
 * needed a bpf_probe_read_kernel() call on the sending CPU. */
SEC("tp_btf/csd_queue_cpu")
int csd_queue_cpu(__u64 *ctx)
{
	__u32 cpu = ctx[0];
	struct __call_single_data *csd = (void *)ctx[3];
	struct sender s = {};
	__u32 type;
	__u64 func;

	if (!cpu_watched(cpu))
		return 0;
	type = csd->node.u_flags & CSD_FLAG_TYPE_MASK;
	func = type == CSD_TYPE_TTWU ? kallsyms_sched_ttwu_pending : (__u64)csd->func;
	fill_sender(ctx, &s, ctx[1], func);
	put_csd_sender((__u64)csd, &s);
	/* The target's queue walk finds every csd by its pointer: the
	 * per-CPU fallback is needed only without it, and only for the csds
	 * that run with no csd_function_entry of their own (remote
	 * irq_work; the wake-ups after the first of a batch). A map update
	 * saved on every other IPI the housekeeping CPUs send (the TLB
	 * flushes among them). */
	if (!walk_csd_queue && (type == CSD_TYPE_IRQ_WORK || type == CSD_TYPE_TTWU))
		bpf_map_update_elem(&csd_last, &cpu, &s, BPF_ANY);
	return 0;
}

/* A plain IPI sent to `target`: its sender becomes the slot's last, the
 * one not taken yet its prev. Replaced whole (not written in place): the
 * target may be reading the slot. */
static __always_inline void note_plain(void *ctx, __u32 target, __u64 callsite)
{
	struct ipi_slot n = {};
	struct ipi_slot *o = bpf_map_lookup_elem(&ipi_senders, &target);

	fill_sender(ctx, &n.last, callsite, 0);
	if (o && o->last.valid) {
		if (o->prev.valid)
			drop(DROP_EXTRA_SENDER);
		__builtin_memcpy(&n.prev, &o->last, sizeof(n.prev));
	}
	if (bpf_map_update_elem(&ipi_senders, &target, &n, BPF_ANY))
		drop(DROP_SENDER);
}

SEC("tp_btf/ipi_send_cpu")
int BPF_PROG(ipi_send_cpu, unsigned int cpu, unsigned long callsite, void *callback)
{
	/* csd IPIs are paired by csd_queue_cpu; this keeps the others. */
	if (!cpu_watched(cpu) || callback)
		return 0;
	note_plain(ctx, cpu, callsite);
	return 0;
}

/* Kernels before 6.4 have no csd_queue_cpu / ipi_send_cpu: the same
 * facts from the functions every sender goes through (fentry; their
 * callsite is then the stack's, resolved in user space). */

static __always_inline void note_single(void *ctx, int cpu, __u64 node)
{
	struct sender s = {};
	__u32 target = cpu, arg;
	__u64 func;

	if (!cpu_watched(target))
		return;
	csd_node_func(node, &func, &arg);
	fill_sender(ctx, &s, 0, func);
	if (bpf_map_update_elem(&csd_senders, &node, &s, BPF_ANY))
		drop(DROP_SENDER);
	bpf_map_update_elem(&csd_last, &target, &s, BPF_ANY);
}

/* Every single-CPU queueing goes through __smp_call_single_queue: remote
 * irq_work (nohz_full kicks) and remote wake-ups from other files, and
 * smp_call_function_single(_async) through generic_exec_single, into
 * which the compiler may inline it (Debian's 5.10 and 6.1 do): both. */
SEC("fentry/__smp_call_single_queue")
int BPF_PROG(smp_single_queue, int cpu, struct llist_node *node)
{
	note_single(ctx, cpu, (__u64)node);
	return 0;
}

SEC("fentry/generic_exec_single")
int BPF_PROG(smp_exec_single, int cpu, struct __call_single_data *csd)
{
	note_single(ctx, cpu, (__u64)csd);
	return 0;
}

/* smp_call_function_many() and on_each_cpu*(): one entry per round,
 * under the sending CPU's csd array, if any watched CPU is a target. The
 * function (a pointer argument 5.10's verifier will not hand over) is
 * read from the csd by the target's queue walk. */
SEC("fentry/smp_call_function_many_cond")
int BPF_PROG(smp_many_cond, const struct cpumask *mask)
{
	struct sender s = {};
	__u64 bits, cfd, base = 0;
	bool hit = false;

	for (__u32 w = 0; w < WATCH_WORDS; w++) {
		if (w >= cpumask_words)
			break;
		if (!watch_mask[w])
			continue;
		bits = 0;
		bpf_probe_read_kernel(&bits, sizeof(bits), (void *)mask + w * sizeof(__u64));
		if (bits & watch_mask[w]) {
			hit = true;
			break;
		}
	}
	if (!hit)
		return 0;
	/* cfd_data's first member is the per-CPU csd array (5.10: csd,
	 * 6.1: pcpu, whose first member is the csd). */
	cfd = kallsyms_this_cpu(kallsyms_cfd_data);
	if (!cfd || bpf_probe_read_kernel(&base, sizeof(base), (void *)cfd) || !base)
		return 0;
	fill_sender(ctx, &s, 0, 0);
	if (bpf_map_update_elem(&many_senders, &base, &s, BPF_ANY))
		drop(DROP_SENDER);
	return 0;
}

/* Reschedule IPIs (x86). */
SEC("fentry/native_smp_send_reschedule")
int BPF_PROG(smp_send_reschedule, int cpu)
{
	__u32 target = cpu;

	if (!cpu_watched(target))
		return 0;
	note_plain(ctx, target, 0);
	return 0;
}

/* ---- the function an IPI ran on the target ---- */

/* Whether csd_last may hold the sender of a csd that runs `func` (where
 * csd_function_entry is, csd_queue_cpu writes it for wake-ups and
 * irq_work only, and irq_work has no csd_function_entry): spares the
 * protected CPU a lookup on every other IPI. */
static __always_inline bool csd_last_may_hold(void *func)
{
	return !kallsyms_sched_ttwu_pending || (__u64)func == kallsyms_sched_ttwu_pending;
}

SEC("raw_tp/csd_function_entry")
int BPF_PROG(csd_function_entry, void *func, void *csd)
{
	struct cpu_state *st;
	struct sender *s;
	__u64 key = (__u64)csd;
	__u32 cpu;

	if (!watched_here())
		return 0;
	st = cur_state();
	if (!st)
		return 0;
	if (!st->start) {
		/* Run with no IPI (the idle loop flushes the queue): its
		 * sender's entries are spent, or a later IPI would take
		 * them for its own. */
		s = bpf_map_lookup_elem(&csd_senders, &key);
		if (s && s->valid) {
			s->valid = 0;
			if (!csd_last_may_hold(func))
				return 0;
			cpu = bpf_get_smp_processor_id();
			s = bpf_map_lookup_elem(&csd_last, &cpu);
			if (s)
				s->valid = 0;
		}
		return 0;
	}
	add_cause(st, CLASS_IPI, KIND_CSD_FUNCTION, 0, (__u64)func);
	s = bpf_map_lookup_elem(&csd_senders, &key);
	if (s && s->valid) {
		/* Marked, not deleted: a delete takes the LRU lock on the
		 * protected CPU, and the next queueing of this csd (per-CPU
		 * csds are reused) overwrites the entry anyway. */
		attach_sender(st, s);
		if (!csd_last_may_hold(func))
			return 0;
		/* Consumed: the per-CPU fallback must not reuse it. */
		cpu = bpf_get_smp_processor_id();
		s = bpf_map_lookup_elem(&csd_last, &cpu);
		if (s)
			s->valid = 0;
	} else if (st->defer) {
		st->defer_unknown = 1;
	}
	return 0;
}

/* ---- details inside an episode ---- */

SEC("tp_btf/timer_expire_entry")
int BPF_PROG(timer_expire_entry, struct timer_list *timer, unsigned long baseclk)
{
	struct cpu_state *st = detail_state();

	if (st)
		add_cause(st, CLASS_TIMER, KIND_TIMER_FN, 0, (__u64)BPF_CORE_READ(timer, function));
	return 0;
}

SEC("tp_btf/hrtimer_expire_entry")
int BPF_PROG(hrtimer_expire_entry, struct hrtimer *hrtimer, ktime_t *now)
{
	struct cpu_state *st = detail_state();

	if (st)
		add_cause(st, CLASS_TIMER, KIND_HRTIMER_FN, 0, (__u64)BPF_CORE_READ(hrtimer, function));
	return 0;
}

SEC("tp_btf/workqueue_execute_start")
int BPF_PROG(workqueue_execute_start, struct work_struct *work)
{
	struct cpu_state *st = detail_state();

	if (st)
		add_cause(st, CLASS_WORKQUEUE, KIND_WORK, 0, (__u64)BPF_CORE_READ(work, func));
	return 0;
}

SEC("tp_btf/tlb_flush")
int BPF_PROG(tlb_flush, int reason, unsigned long pages)
{
	struct cpu_state *st = detail_state();

	if (st)
		add_cause(st, CLASS_IPI, KIND_TLB_FLUSH, reason, pages);
	return 0;
}

/* ---- exceptions ---- */

SEC("tp_btf/page_fault_user")
int BPF_PROG(page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	struct cpu_state *st;
	__u64 now;

	if (!watched_here())
		return 0;
	st = cur_state();
	if (!st)
		return 0;
	/* Where no episode is open, the one opened below clears a break's
	 * flag: it keeps the cause as noted (index unused). */
	strict_check(st, st->start ? st->nchain : MAX_CHAIN, CLASS_EXCEPTION, KIND_PAGE_FAULT,
		     error_code, address);
	if (st->start) {
		add_cause(st, CLASS_EXCEPTION, KIND_PAGE_FAULT, error_code, address);
		return 0;
	}
	/* No exit tracepoint: outside context tracking it is a point event. */
	now = bpf_ktime_get_ns();
	open_episode(st, now);
	add_cause(st, CLASS_EXCEPTION, KIND_PAGE_FAULT, error_code, address);
	st->flags |= REC_NO_DURATION;
	close_episode(st, now);
	return 0;
}

/* ---- NMIs: a record of their own; never touch the interrupted state ---- */

SEC("tp_btf/nmi_handler")
int BPF_PROG(nmi_handler, void *handler, s64 delta_ns, int handled)
{
	struct record *r;
	struct cause c = {};
	__u32 cpu = bpf_get_smp_processor_id();

	if (!watched_here())
		return 0;
	c.class = CLASS_NMI;
	c.kind = KIND_NMI;
	c.addr = (__u64)handler;
	aggregate(cpu, &c, delta_ns);
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		drop(DROP_RINGBUF);
		return 0;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->duration_ns = delta_ns;
	r->start_ns = bpf_ktime_get_ns() - delta_ns;
	r->cpu = cpu;
	r->tid = (__u32)bpf_get_current_pid_tgid();
	r->tgid = bpf_get_current_pid_tgid() >> 32;
	r->nchain = 1;
	r->primary = c;
	r->chain[0] = c;
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	return 0;
}

/* ---- preemption: another task runs on the watched CPU ---- */

struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

struct task_struct___pre516 {
	unsigned int cpu;
} __attribute__((preserve_access_index));

/* The CPU a task is on (thread_info.cpu since 5.16, task->cpu before). */
static __always_inline __u32 task_cpu_of(__u64 t)
{
	struct task_struct *task = (void *)t;

	if (bpf_core_field_exists(task->thread_info.cpu))
		return BPF_CORE_READ(task, thread_info.cpu);
	return BPF_CORE_READ((struct task_struct___pre516 *)task, cpu);
}

/* The current task holds a registration (strict mode or task API). */
static __always_inline bool registered_now(void)
{
	__u32 key;

	return strict_count && registration(&key);
}

static __always_inline __u64 runtime_of(__u64 t)
{
	return BPF_CORE_READ((struct task_struct *)t, se.sum_exec_runtime);
}

/* Task `t` (the current one at sched_switch, or a waiting one) waits on
 * this CPU from `now`, preempted by `by`. */
static __always_inline void displace(__u64 t, __u32 tid, __u32 tgid, const char *comm,
				     __u32 by, __u64 now)
{
	struct displaced d = {};

	d.start = now;
	d.ran = runtime_of(t);
	d.by = by;
	d.tgid = tgid;
	d.cpu = bpf_get_smp_processor_id();
	__builtin_memcpy(d.comm, comm, TASK_COMM);
	if (bpf_map_update_elem(&displaced, &tid, &d, BPF_ANY))
		drop(DROP_DISPLACED);
}

/* Task `t` runs again: if it waited here all along, one record, its
 * own, naming the task that preempted it. One that ran on another CPU
 * meanwhile left this wait when it migrated, at a time not known here:
 * no record (nothing was lost: it was not waiting here). */
static __always_inline void displaced_ends(__u64 t, __u32 tid, __u64 now)
{
	struct displaced *d = bpf_map_lookup_elem(&displaced, &tid);
	__u32 cpu = bpf_get_smp_processor_id();
	struct cause p = {};
	struct record *r;

	if (!d)
		return;
	if (d->cpu != cpu || d->ran != runtime_of(t) || now < d->start) {
		bpf_map_delete_elem(&displaced, &tid);
		return;
	}
	p.class = CLASS_SCHED;
	p.kind = KIND_PREEMPT;
	p.arg = d->by;
	aggregate(cpu, &p, now - d->start);
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		drop(DROP_RINGBUF);
		bpf_map_delete_elem(&displaced, &tid);
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->start_ns = d->start;
	r->duration_ns = now - d->start;
	r->cpu = cpu;
	r->tid = tid;
	r->tgid = d->tgid;
	r->nchain = 1;
	__builtin_memcpy(r->comm, d->comm, TASK_COMM);
	r->primary = p;
	r->chain[0] = p;
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	bpf_map_delete_elem(&displaced, &tid);
}

/* The kernel's part of a displacement ends (its record is written); the
 * displaced task waits on, preempted by `by` (0: nothing runs). */
static __always_inline void episode_to_wait(struct cpu_state *st, __u32 by, __u64 now)
{
	__u32 tid = st->tid, tgid = st->tgid;
	__u64 task = st->sched_task;
	char comm[TASK_COMM];

	__builtin_memcpy(comm, st->comm, TASK_COMM);
	close_episode(st, now);
	displace(task, tid, tgid, comm, by, now);
}

/* A task switched out while still runnable was preempted: at the tick,
 * on return to user space, `preempt` is false (schedule() from the exit
 * path), so the state is what tells it from a task that blocked. */
static __always_inline bool still_runnable(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state) == TASK_RUNNING;
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state) == TASK_RUNNING;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct cpu_state *st;
	__u32 prev_pid = prev->pid, next_pid = next->pid;
	bool next_kthread = next->flags & PF_KTHREAD;
	bool involuntary, others = false;
	__u64 now;

	if (!armed)
		return 0;
	if (target_tgid) {
		st = cur_state();
		/* Follow the process, and the switches that end its waits. */
		if (!st)
			return 0;
		others = prev->tgid != target_tgid;
		if (others && !(st->start && st->sched) && next->tgid != target_tgid)
			return 0;
	} else {
		if (!cpu_watched(bpf_get_smp_processor_id()))
			return 0;
		st = cur_state();
		if (!st)
			return 0;
	}
	now = bpf_ktime_get_ns();
	/* A user task preempted by a user task runs again. */
	if (!next_kthread && next_pid && (!target_tgid || next->tgid == target_tgid))
		displaced_ends((__u64)next, next_pid, now);
	if (st->start && st->sched) {
		/* A vCPU thread preempted during a VM exit: the exit goes
		 * on until it re-enters its guest (kvm_entry). */
		if (st->vm && next_pid == st->sched_prev) {
			st->sched = 0;
			return 0;
		}
		/* The displacement ends when the displaced task runs again,
		 * when the CPU goes idle, or when that task is no longer on
		 * this CPU (migrated); until then every task that runs here
		 * is part of it (a preempting task preempted in turn). Idle
		 * displaced by a kernel thread ends when a user task runs. */
		bool waits_on = st->sched_prev && st->tid == st->sched_prev &&
				!(st->flags & REC_STRICT_BREAK);

		if (next_pid == 0 && waits_on &&
		    task_cpu_of(st->sched_task) == bpf_get_smp_processor_id() &&
		    still_runnable((struct task_struct *)st->sched_task)) {
			/* The CPU goes idle while the displaced task is still
			 * runnable here: throttled (a kernel thread ran in an
			 * RT-throttled stretch). The kernel's part ends; the
			 * rest is a wait by "pid 0", as below. */
			episode_to_wait(st, 0, now);
		} else if (next_pid == st->sched_prev || next_pid == 0 ||
		    (st->sched_prev == 0 && !next_kthread) ||
		    task_cpu_of(st->sched_task) != bpf_get_smp_processor_id()) {
			close_episode(st, now);
		} else if (!next_kthread && waits_on) {
			/* Another user task runs before the displaced one: the
			 * kernel's part ends here; the displaced task waits on
			 * as a preempted one (its own record when it runs). */
			episode_to_wait(st, next_pid, now);
		} else {
			add_cause(st, CLASS_SCHED, KIND_PREEMPT, next_pid, 0);
		}
		return 0;
	}
	if (others)
		return 0; /* followed only for the end of a wait */
	/* A kernel thread displacing the task (or idle), or any task
	 * preempting a running one: that is an interruption. Otherwise the
	 * task left the CPU itself (blocked, exited, killed): a kernel entry
	 * it made ends here, since it will not reach user_enter now. */
	involuntary = preempt || still_runnable(prev);
	if (next_pid == 0 || (!next_kthread && !(involuntary && prev_pid))) {
		if (st->start)
			close_episode(st, now);
		/* Still runnable, yet the CPU goes idle: throttled (RT
		 * throttling, CFS bandwidth). A wait with nothing running,
		 * timed like a preemption, by "pid 0". (Migrated away, it
		 * runs elsewhere first: no record, see displaced_ends.) */
		if (next_pid == 0 && involuntary && prev_pid &&
		    !(prev->flags & PF_KTHREAD) && !registered_now()) {
			char comm[TASK_COMM];

			bpf_get_current_comm(comm, sizeof(comm));
			displace((__u64)prev, prev_pid, prev->tgid, comm, 0, now);
		}
		return 0;
	}
	/* A user task preempting, with no kernel work open here: the
	 * preempted task waits (see `displaced`). A registered task's
	 * preemption is a break: the episode path below. */
	if (!next_kthread && !st->start && !registered_now()) {
		char comm[TASK_COMM];

		bpf_get_current_comm(comm, sizeof(comm));
		displace((__u64)prev, prev_pid, prev->tgid, comm, next_pid, now);
		return 0;
	}
	if (!st->start)
		open_episode(st, now);
	st->sched = 1;
	st->sched_prev = prev_pid;
	st->sched_task = (__u64)prev;
	__u32 at = st->nchain;
	add_cause(st, CLASS_SCHED, KIND_PREEMPT, next_pid, 0);
	/* After the episode opened: the break is its own (the flag survives,
	 * the chain is completed into the break record). */
	strict_check(st, at, CLASS_SCHED, KIND_PREEMPT, next_pid, 0);
	return 0;
}

/* ---- exact user/kernel boundaries on nohz_full CPUs ---- */

SEC("tp_btf/user_exit")
int BPF_PROG(user_exit, int dummy)
{
	struct cpu_state *st;
	struct pt_regs *regs;
	__u64 now;
	long nr;

	if (!watched_here())
		return 0;
	st = cur_state();
	if (!st)
		return 0;
	/* A syscall's entry or an interrupt's/exception's: arch.h reads
	 * the registers that tell. */
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	nr = ARCH_SYSCALL_NR(regs);
	if (ARCH_IS_SYSCALL_ENTRY(regs, nr)) {
		/* The third argument carries the arming syscall's magic: read
		 * only when registrations exist (strict_check returns at once
		 * otherwise). */
		strict_check(st, 0, CLASS_SYSCALL, KIND_SYSCALL, nr,
			     strict_count ? ARCH_SYSCALL_ARG3(regs) : 0);
		if (!want_syscalls)
			return 0; /* the task's own call: not an interruption */
		now = bpf_ktime_get_ns();
		open_episode(st, now);
		st->exact = 1;
		add_cause(st, CLASS_SYSCALL, KIND_SYSCALL, nr, 0);
		return 0;
	}
	now = bpf_ktime_get_ns();
	open_episode(st, now);
	st->exact = 1;
	return 0;
}

SEC("tp_btf/user_enter")
int BPF_PROG(user_enter, int dummy)
{
	struct cpu_state *st;

	if (!watched_here())
		return 0;
	st = cur_state();
	if (st && st->start && st->exact)
		close_episode(st, bpf_ktime_get_ns());
	return 0;
}

/* ---- the task's own syscalls: attached only when strict mode or
 * --syscalls needs them, because any program here costs every syscall
 * on every CPU ---- */

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	struct cpu_state *st;
	__u64 now;

	if (!watched_here())
		return 0;
	st = cur_state();
	if (!st)
		return 0;
	/* Where an episode is open here, user_exit opened it with this call. */
	strict_check(st, 0, CLASS_SYSCALL, KIND_SYSCALL, id,
		     strict_count ? ARCH_SYSCALL_ARG3(regs) : 0);
	/* Where context tracking bounds syscalls (user_exit opened the
	 * episode) there is nothing to add; elsewhere a point record. */
	if (!want_syscalls || st->start)
		return 0;
	now = bpf_ktime_get_ns();
	open_episode(st, now);
	add_cause(st, CLASS_SYSCALL, KIND_SYSCALL, id, 0);
	st->flags |= REC_NO_DURATION;
	close_episode(st, now);
	return 0;
}

/* ---- the task isolation API's helpers ---- */

/* ISOL_INHERIT_ACTIVE: a registered task's children are registered too.
 * Runs on the forking CPU, only while registrations exist. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(process_fork, struct task_struct *parent, struct task_struct *child)
{
	struct strict_cfg *cfg, c;
	__u32 key, ckey;

	if (!strict_count)
		return 0;
	key = parent->pid;
	ckey = child->pid;
	cfg = bpf_map_lookup_elem(&strict, &key);
	if (!cfg) {
		key = parent->tgid | STRICT_KEY_PROCESS;
		ckey = child->tgid | STRICT_KEY_PROCESS;
		cfg = bpf_map_lookup_elem(&strict, &key);
	}
	if (!cfg || !(cfg->flags & STRICT_INHERIT) || key == ckey)
		return 0; /* not inherited, or a new thread a process key covers */
	c = *cfg;
	if (!(ckey & STRICT_KEY_PROCESS))
		c.flags &= ~STRICT_PROCESS;
	/* The child's isolation begins now: an IPI queued before it was
	 * meant for whatever ran there then. */
	if (!(c.flags & STRICT_PENDING))
		c.active_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&strict, &ckey, &c, BPF_ANY);
	return 0;
}

/* A registration dies with its task: the strict map is keyed by tid (or
 * tgid), and a new task that reuses the number must not inherit another's
 * registration (and its signal). A thread's key goes at its exit, the
 * process's when its last thread exits. Runs on every exit on every CPU,
 * one load while no registration exists. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(process_exit, struct task_struct *p)
{
	__u32 key;

	if (!strict_count)
		return 0;
	key = p->pid;
	bpf_map_delete_elem(&strict, &key);
	if (BPF_CORE_READ(p, signal, live.counter) == 0) {
		key = p->tgid | STRICT_KEY_PROCESS;
		bpf_map_delete_elem(&strict, &key);
	}
	return 0;
}

/* Whether and why the tick stops: success once per stop, a failure (with
 * the dependency that keeps it) at each interrupt exit that cannot. */
SEC("tp_btf/tick_stop")
int BPF_PROG(tick_stop, int success, int dependency)
{
	struct tick_state *t;
	__u32 zero = 0;

	if (!cpu_watched(bpf_get_smp_processor_id()))
		return 0;
	t = bpf_map_lookup_elem(&ticks, &zero);
	if (!t)
		return 0;
	if (success) {
		t->stop_ts_ns = bpf_ktime_get_ns();
	} else {
		t->fail_ts_ns = bpf_ktime_get_ns();
		t->fail_dependency = dependency;
		t->fails++;
	}
	return 0;
}

/* ---- VM exits of KVM vCPU threads ----
 *
 * A vCPU thread sits in the kernel (ioctl KVM_RUN) while its guest runs;
 * each VM exit is one interruption of the guest: it opens at kvm_exit
 * (or, where kvm_exit fires only after the host served the interrupt that
 * caused the exit, as on 5.10 and 6.1, at that interrupt: the thread was
 * in its guest since kvm_entry) and closes when the thread re-enters the
 * guest (kvm_entry), returns to its VMM (kvm_userspace_exit) or leaves
 * the CPU (sched_switch). What
 * the host runs meanwhile (the interrupt that caused an INTR exit, the
 * IPI's function) joins its chain through the handlers above. These are
 * raw tracepoints of the kvm module: loaded with the rest, attached by
 * user space once the module is there. */

/* Written by user space before it attaches these programs. */
struct kvm_layout kvm_layout = {};

#define VMCB_EXIT_CODE 0x70 /* architectural: the VMCB control area's EXITCODE */

/* The host took the CPU back (kvm_layout's table of reasons). */
static __always_inline bool vm_host_caused(__u32 reason, __u32 isa)
{
	if (isa == VM_ISA_SVM) {
		reason -= 0x40;
		return reason < 64 && ((kvm_layout.svm_host_reasons >> reason) & 1);
	}
	return isa == VM_ISA_VMX && reason < 64 && ((kvm_layout.vmx_host_reasons >> reason) & 1);
}

/* Strict mode: a host-caused exit breaks a thread registered for
 * CLASS_VMEXIT; the guest's own exits never do. Once per exit: where an
 * interrupt opened it, that may have broken (counted) it already. */
static __always_inline void vm_exit_strict(struct cpu_state *st, __u32 reason, __u32 isa)
{
	if (!strict_count || !vm_host_caused(reason, isa))
		return;
	if ((st->flags & REC_STRICT_BREAK) && st->break_tid == (__u32)bpf_get_current_pid_tgid())
		return;
	/* Its entry is chain[0], either way it opened. */
	strict_check(st, 0, CLASS_VMEXIT, KIND_VM_EXIT, reason, isa);
}

/* Open the episode of a VM exit. */
static __always_inline void vm_exit_open(__u32 reason, __u32 isa)
{
	struct cpu_state *st;
	__u64 now;

	st = cur_state();
	if (!st)
		return;
	st->guest_tid = 0;
	if (st->start && st->vm_pending && st->tid == (__u32)bpf_get_current_pid_tgid()) {
		/* Opened by the interrupt that caused it: name it now. */
		st->chain[0].arg = reason;
		st->chain[0].addr = isa;
		st->vm_pending = 0;
		count_kind(KIND_VM_EXIT);
		/* kvm_exit runs with interrupts on here: a signal is sent at
		 * once, no irq_work of isol's is to come. */
		__u8 irq_work = st->isol_irq_work;
		vm_exit_strict(st, reason, isa);
		st->isol_irq_work = irq_work;
		return;
	}
	now = bpf_ktime_get_ns();
	/* An episode still open here lost its end (attached mid-exit). */
	if (st->start)
		close_episode(st, now);
	open_episode(st, now);
	st->vm = 1;
	add_cause(st, CLASS_VMEXIT, KIND_VM_EXIT, reason, isa);
	count_kind(KIND_VM_EXIT);
	vm_exit_strict(st, reason, isa);
}

/* 5.16 on: kvm_exit(vcpu, isa); the reason is in the vendor's vCPU,
 * which embeds struct kvm_vcpu at offset 0. (A raw_tp may not read past
 * its tracepoint's arguments: one program per prototype.) */
SEC("raw_tp/kvm_exit")
int kvm_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 vcpu, vmcb = 0;
	__u32 isa, reason = VM_REASON_UNKNOWN;

	if (!watched_here())
		return 0;
	vcpu = ctx->args[0];
	isa = ctx->args[1];
	if (isa == VM_ISA_SVM && kvm_layout.svm_vmcb_off) {
		if (!bpf_probe_read_kernel(&vmcb, sizeof(vmcb), (void *)(vcpu + kvm_layout.svm_vmcb_off)) && vmcb)
			bpf_probe_read_kernel(&reason, sizeof(reason), (void *)(vmcb + VMCB_EXIT_CODE));
	} else if (isa == VM_ISA_VMX && kvm_layout.vmx_reason_off) {
		if (!bpf_probe_read_kernel(&reason, sizeof(reason), (void *)(vcpu + kvm_layout.vmx_reason_off)))
			reason &= 0xffff; /* the basic exit reason */
	}
	vm_exit_open(reason, isa);
	return 0;
}

/* Before 5.16: kvm_exit(reason, vcpu, isa). */
SEC("raw_tp/kvm_exit")
int kvm_exit_old(struct bpf_raw_tracepoint_args *ctx)
{
	if (watched_here())
		vm_exit_open(ctx->args[0], ctx->args[2]);
	return 0;
}

SEC("raw_tp/kvm_entry")
int kvm_entry(struct bpf_raw_tracepoint_args *ctx)
{
	struct cpu_state *st;

	if (!watched_here())
		return 0;
	st = cur_state();
	if (!st)
		return 0;
	if (st->start && st->vm && st->tid == (__u32)bpf_get_current_pid_tgid())
		close_episode(st, bpf_ktime_get_ns());
	st->guest_tid = (__u32)bpf_get_current_pid_tgid();
	return 0;
}

/* KVM_RUN returns to the VMM (an exit it handles in user space, or a
 * signal): the exit's kernel part ends here. */
SEC("raw_tp/kvm_userspace_exit")
int kvm_userspace_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct cpu_state *st;

	if (!watched_here())
		return 0;
	st = cur_state();
	if (!st)
		return 0;
	st->guest_tid = 0;
	if (!st->start || !st->vm || st->tid != (__u32)bpf_get_current_pid_tgid())
		return 0;
	/* A full chain gives its last slot to the return to the VMM, which
	 * says where the exit's time went. */
	if (st->nchain >= MAX_CHAIN) {
		st->nchain = MAX_CHAIN - 1;
		st->flags |= REC_TRUNCATED;
	}
	add_cause(st, CLASS_VMEXIT, KIND_VM_USERSPACE, ctx->args[0], 0);
	st->flags |= REC_VM_USERSPACE;
	close_episode(st, bpf_ktime_get_ns());
	return 0;
}
