# The rt flavour has the osnoise and timerlat tracers (rtla needs them).
section tracers cat /sys/kernel/tracing/available_tracers
