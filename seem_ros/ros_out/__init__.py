"""ROS output side: results, label image, label info and overlay."""
