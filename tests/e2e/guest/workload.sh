# The e2e workload (busybox sh): short-lived processes, tmpfs writes, memory fragmented on
# purpose and then compacted, so that compaction's free scanner calls __isolate_free_page.
echo "workload: begin" > /sys/kernel/tracing/trace_marker 2>/dev/null
i=0
while [ $i -lt 40 ]; do
    /bin/true &
    i=$((i + 1))
done
wait
mount -t tmpfs -o size=160M tmpfs /mnt/w
dd if=/dev/zero of=/mnt/w/plain bs=1M count=8 2>/dev/null
# two writers on two CPUs: their pages interleave in per-CPU batches; freeing one file leaves holes
taskset 1 dd if=/dev/zero of=/mnt/w/a bs=4k count=6144 2>/dev/null &
taskset 2 dd if=/dev/zero of=/mnt/w/b bs=4k count=6144 2>/dev/null &
wait
rm -f /mnt/w/a
echo 1 > /proc/sys/vm/compact_memory
# a second round (the first compaction of a fresh boot may migrate only a few pages: its free
# scanner then calls __isolate_free_page once or twice): holes left by the other writer this time
taskset 1 dd if=/dev/zero of=/mnt/w/c bs=4k count=4096 2>/dev/null &
taskset 2 dd if=/dev/zero of=/mnt/w/d bs=4k count=4096 2>/dev/null &
wait
rm -f /mnt/w/d
echo 1 > /proc/sys/vm/compact_memory
seq 1 3000 | sort -r | md5sum > /dev/null
rm -f /mnt/w/*
umount /mnt/w
echo 1 > /proc/sys/vm/drop_caches
echo "workload: end" > /sys/kernel/tracing/trace_marker 2>/dev/null
exit 0
