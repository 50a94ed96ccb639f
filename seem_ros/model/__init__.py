"""SEEM (Segment Everything Everywhere All at Once, v1) inference in PyTorch. No ROS imports here."""
