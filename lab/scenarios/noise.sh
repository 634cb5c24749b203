# isol noise on idle nohz_full CPU 1 (see lab/tests/noise.rs). isol's
# own threads other than the sampler stay on CPU 0. One invocation: BPF
# loading takes ~25 s under TCG.
section idle isol noise -c 1 -D 8 --json --worst 50
