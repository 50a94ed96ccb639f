"""The seem_node process. SIGINT and SIGTERM are handled from its first instruction: before the
node exists (while torch and ROS are still being imported) they end the process at once, since
nothing needs releasing yet; afterwards they ask the node to go through its lifecycle shutdown.
Either way the process exits with code 0 within about two seconds."""
import os
import signal
import threading


def main(args=None) -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: os._exit(0))
    from .node import run  # imports torch and rclpy: seconds
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    run(stop, args)


if __name__ == "__main__":
    main()
