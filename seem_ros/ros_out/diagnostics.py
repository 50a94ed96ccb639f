"""/diagnostics for seem_node: counts of every frame and prompt, latency, the backend in use, and a
level that says when something is wrong (frames failing, frames lost in transport, prompts dropped,
a backend that fell back), with the reason."""
import dataclasses
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

FASTDDS_HINT = ("best-effort frames larger than the camera driver's Fast DDS shared-memory segment (512 KB by "
                "default) are lost: start the camera with FASTDDS_DEFAULT_PROFILES_FILE (Kilted and later) or "
                "FASTRTPS_DEFAULT_PROFILES_FILE (Jazzy, Humble) set to seem_ros's "
                "config/fastdds_large_shm.xml (README, troubleshooting)")


@dataclass
class NodeCounts:
    """Cumulative since the node started: frames_received = processed + replaced + refused + failed
    + abandoned (+ the one in the mailbox); frames lost before reaching the node are counted apart."""
    frames_received: int = 0
    frames_processed: int = 0
    frames_replaced: int = 0
    frames_refused: int = 0
    frames_failed: int = 0
    frames_abandoned: int = 0
    frames_lost_in_transport: int = 0  # reported by the middleware (QoS message-lost events)
    frames_missed: int = 0  # gaps in the publishers' sequence numbers (transport or queue overwrite)
    frames_without_publisher_id: int = 0  # received with no publisher named (rclpy 7): not in frames_missed
    prompts_received: int = 0
    prompts_applied: int = 0
    prompts_refused: int = 0
    prompts_dropped: int = 0

    def minus(self, earlier: "NodeCounts") -> "NodeCounts":
        return NodeCounts(**{f.name: getattr(self, f.name) - getattr(earlier, f.name)
                             for f in dataclasses.fields(self)})


def assess(period: NodeCounts, last_failure: str, backend_warning: str, backend_error: str = "") -> Tuple[int, str]:
    """(level, message) for one reporting period. backend_error: the backend cannot run frames now
    (a frame server not reachable): an error whether or not frames came."""
    errors, warnings = [backend_error] if backend_error else [], []
    if period.frames_failed:
        text = f"{period.frames_failed} of {period.frames_failed + period.frames_processed} frames failed: {last_failure}"
        (errors if not period.frames_processed else warnings).append(text)
    lost = max(period.frames_lost_in_transport, period.frames_missed)
    if lost:
        warnings.append(f"{lost} frames lost before reaching the node; {FASTDDS_HINT}")
    if period.frames_refused:
        warnings.append(f"{period.frames_refused} camera images refused (see the log)")
    if period.prompts_dropped:
        warnings.append(f"{period.prompts_dropped} prompts dropped (queue full or lost in transport)")
    if backend_warning:
        warnings.append(backend_warning)
    if errors:
        return DiagnosticStatus.ERROR, "; ".join(errors + warnings)
    if warnings:
        return DiagnosticStatus.WARN, "; ".join(warnings)
    if period.frames_processed:
        return DiagnosticStatus.OK, "processing"
    return DiagnosticStatus.OK, "no frames processed" if period.frames_received else "no frames received"


def diagnostic_status(name: str, hardware_id: str, total: NodeCounts, period: NodeCounts, seconds: float,
                      latencies_s: Sequence[float], last_failure: str, backend: str, backend_warning: str,
                      tracked_objects: int, prompts_waiting: int, backend_error: str = "") -> DiagnosticStatus:
    level, message = assess(period, last_failure, backend_warning, backend_error)
    latency_ms = np.asarray(latencies_s, float) * 1000
    values: List[Tuple[str, object]] = [
        ("frame rate in (Hz)", period.frames_received / seconds),
        ("frame rate out (Hz)", period.frames_processed / seconds),
        ("inference latency mean (ms)", float(latency_ms.mean()) if latency_ms.size else 0.0),
        ("inference latency p50 (ms)", float(np.percentile(latency_ms, 50)) if latency_ms.size else 0.0),
        ("inference latency p99 (ms)", float(np.percentile(latency_ms, 99)) if latency_ms.size else 0.0),
        ("tracked objects", tracked_objects),
        ("prompts waiting", prompts_waiting),
        ("backend", backend),
    ]
    values += [(f"{f.name.replace('_', ' ')} total", getattr(total, f.name)) for f in dataclasses.fields(total)]
    return DiagnosticStatus(level=level, name=name, hardware_id=hardware_id, message=message,
                            values=[KeyValue(key=k, value=f"{v:.2f}" if isinstance(v, float) else str(v))
                                    for k, v in values])
