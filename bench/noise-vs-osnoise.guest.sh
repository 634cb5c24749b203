# Guest half of bench/noise-vs-osnoise-lab.sh (sourced by the lab's
# busybox sh on the Debian rt kernel). The osnoise tracer with
# NO_OSNOISE_WORKLOAD runs no sampling thread of its own but still emits
# its per-interference events (nmi/irq/softirq/thread_noise) for CPU 1,
# so isol noise's loop is the only workload there and both tools see
# the same interval. rtla is not in the guest: it reads these same
# tracefs files.
T=/sys/kernel/tracing
CPU=${BENCH_CPU:-1}
D=${BENCH_SECONDS:-10}
echo mono > $T/trace_clock # CLOCK_MONOTONIC, isol's clock
echo "$CPU" > $T/osnoise/cpus
echo NO_OSNOISE_WORKLOAD > $T/osnoise/options
echo 1 > $T/events/osnoise/enable
echo 65536 > $T/buffer_size_kb
echo osnoise > $T/current_tracer
section isol isol noise -c "$CPU" -D "$D" --json --worst 1
echo 0 > $T/tracing_on
cat $T/osnoise/options
section trace sh -c "grep -v '^#' $T/trace | grep -E 'nmi_noise|irq_noise|thread_noise|sample_threshold'"
echo nop > $T/current_tracer
