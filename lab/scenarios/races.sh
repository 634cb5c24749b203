# Activations raced against IPIs already on their way (lab/tests/races.rs):
# a thread of the task on CPU 0 unmaps pages throughout, so TLB-flush IPIs
# reach CPU 1 before, while and after each of 200 strict activations.
# isold sees the task's own system calls (strict_syscalls) on every kernel,
# with or without context tracking on CPU 1: the activation is armed by
# one of them.
tune_box 1
start_isold 1 'strict_syscalls = true'
# Where the kernel cannot stop the tick (5.10: no NO_HZ_FULL) strict
# activation is refused, by name: the status says so.
section races sh -c 'userloop -c 1 -f 10 -s -X -R ${ROUNDS:-200} 2>&1; echo "userloop_status=$?"'
