# isol noise on idle nohz_full CPU 1 (see lab/tests/noise.rs). isol's
# own threads other than the sampler stay on CPU 0. One invocation: BPF
# loading takes ~25 s under TCG.
section idle isol noise -c 1 -D 8 --json --worst 50

# The perf-event generator (from CPU 0) makes the kernel run
# remote_function on CPU 1 while isol noise measures there: each such
# entry is named, with its sender, whatever the gap's primary cause.
noisegen --cpu 1 --hk 0 --perf --sleep --period-us 20000 --duration 600 >/tmp/ngp.out 2>/tmp/ngp.err &
NG=$!
section perf isol noise -c 1 -D 8 --json --worst 50
kill $NG || { cat /tmp/ngp.err; fail "the perf generator died"; }
