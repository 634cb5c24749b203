# isol noise --inject on quiet CPU 1 (see lab/tests/recall.rs): isol
# injects every kind of known interference and reports, per kind, how
# many of the injections' gaps name the right kernel function. One
# invocation: BPF loading takes ~25 s under TCG.
section recall isol noise -c 1 -D 8 --json --worst 1 --inject all --inject-every-ms 20
