"""seem_ros: SEEM promptable segmentation for ROS 2."""
