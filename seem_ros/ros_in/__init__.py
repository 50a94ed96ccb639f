"""ROS input side: turning camera messages into model-ready images."""
