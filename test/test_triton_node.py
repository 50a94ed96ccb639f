"""seem_node with backend triton, across processes: configured while its frame server is not there
(an ERROR on /diagnostics naming the server's URL and why, frames counted as failed, the node
alive), then serving the camera's frames once a server starts at that address."""
from triton_harness import ServerProcess, require_triton

from conftest import reference_path
from seem_ros.tools.serve_process import free_port
from ros_harness import apply_ros_environment, diagnostics_values, node_watching_a_camera, spin_until

apply_ros_environment()  # before rclpy is imported anywhere in this process


def test_a_node_whose_server_is_missing_configures_reports_it_and_recovers(tmp_path, ros):
    require_triton()
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    server = ServerProcess(tmp_path, grpc_port=free_port())
    reports = []
    ros.create_subscription(DiagnosticArray, "/diagnostics", reports.append, 10)
    params = {"backend": "triton", "triton_url": server.url, "triton_timeout_ms": 5000}
    still = str(reference_path("images", "zebras1.jpg"))

    def errors():
        return [s.message for r in reports for s in r.status
                if s.name.startswith("seem_node:") and s.level == DiagnosticStatus.ERROR]

    def failed_total():
        return max((int(v) for v in diagnostics_values(reports, "frames failed total")), default=0)

    with node_watching_a_camera(tmp_path, ros, params, still, "--command", "segment the zebra", "--rate", "5",
                                "--duration", "240") as (node, results):
        assert f"frame server {server.url} unavailable" in node.log()  # said at configure
        assert spin_until(ros, lambda: failed_total() >= 3 and errors(), 90), node.log()[-3000:]
        assert any(server.url in message for message in errors()), errors()
        assert not any(r.objects for r in results) and node.alive()  # (frames before the command: no objects)
        server.start()
        try:
            assert spin_until(ros, lambda: any(r.objects for r in results), 60), node.log()[-3000:]
            assert node.alive()
        finally:
            server.stop()
