# isol census on nohz_full CPU 1 (see lab/tests/census.rs): the built-in
# load on CPU 0, a census victim spinning on CPU 1. Two censuses (each
# attach is ~25 s of BPF verification under TCG), then a compare.
section census isol census --cpus 1 -D 25 --json -o /tmp/a.json
section text isol census --compare /tmp/a.json /tmp/a.json
section census2 isol census --cpus 1 -D 10 --classes smp-call,nohz-kick --json -o /tmp/b.json
section compare isol census --compare /tmp/a.json /tmp/b.json --json
