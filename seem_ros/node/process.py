"""The seem_node process. SIGINT and SIGTERM are handled from its first instruction: before the
node exists (while torch and ROS are still being imported) they end the process at once, since
nothing needs releasing yet; afterwards they ask the node to go through its lifecycle shutdown.
Either way the process exits with code 0 within about two seconds.

OpenMP's worker threads (PyTorch's CPU kernels) spin for a while after each parallel region before
they sleep. While inference runs on a machine with few cores, that spinning keeps the service and
prompt threads off the CPU: on a 2-core machine set_prompt answered in 120-140 ms in 2 of 6 tries instead
of ~45 ms. A shorter spin (GOMP_SPINCOUNT 10000, unless set) keeps them within ~50 ms at about 2% of
decoder throughput (OMP_WAIT_POLICY=PASSIVE: also ~45 ms, but 20-25% slower decoding)."""
import os
import signal
import threading

OPENMP_SPIN_COUNT = "10000"


def main(args=None) -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: os._exit(0))
    os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)  # read when torch loads OpenMP
    from seem_ros.node.node import run  # imports torch and rclpy: seconds
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    run(stop, args)


if __name__ == "__main__":
    main()
