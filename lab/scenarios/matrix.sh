# One kernel of the lab's matrix (see lab/tests/matrix.rs): its release, the
# isolation it applied, isol's view of it, and a bulk section to show the
# output channel carries a megabyte whole.
section uname uname -r
# Absent on kernels without NO_HZ_FULL: the section then has rc != 0.
section nohz_full cat /sys/devices/system/cpu/nohz_full
section isolated cat /sys/devices/system/cpu/isolated
section info isol info --json
section bulk sh -c "seq 1 20000 | sed 's/\$/ xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/'"
