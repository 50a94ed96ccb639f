"""ROS output side: results, label image, label info, overlay and diagnostics statuses."""
