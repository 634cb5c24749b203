# isol info on an isolated CPU 1 (see lab/tests/info.rs).
section info isol info --json
