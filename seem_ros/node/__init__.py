"""seem_node, the ROS 2 lifecycle node: node.py wires the parts; the frame worker, the prompt intake
and applier, the segment_image service and diagnostics are its threads and endpoints."""
