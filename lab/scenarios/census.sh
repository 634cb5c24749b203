# isol census on quiet CPU 1 (see lab/tests/census.rs): the built-in load
# on CPU 0, a census victim spinning on CPU 1. On 6.12 two censuses and a
# compare; on the older kernels of the matrix one census.
section census isol census --cpus 1 -D 25 --json -o /tmp/a.json
[ "$LAB_SERIES" = 6.12 ] || exit 0
section text isol census --compare /tmp/a.json /tmp/a.json
section census2 isol census --cpus 1 -D 10 --classes smp-call,nohz-kick --json -o /tmp/b.json
section compare isol census --compare /tmp/a.json /tmp/b.json --json
