"""ROS input side: the camera subscription and mailbox, camera messages -> images, prompt messages
-> prompts, clicked points -> pixels."""
