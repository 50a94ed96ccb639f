"""seem_ros: SEEM promptable segmentation for ROS 2.

Layers, lowest first; a module imports only from its own folder or from the layers before it
(test/test_architecture.py checks it):
  throttled_log  rate-limited logging for the ROS-facing layers
  model          SEEM's nn.Modules, their configs and the tokenizer (no ROS)
  weights        checkpoints: download, sha256, loading into the modules
  inference      predictor, frame engine, visual prompts, post-processing: modules -> masks
  runtime        backends: torch, CUDA graphs, ONNX Runtime, TensorRT, engine caches
  tracking       objects across frames: ids, status, what each asks of a frame
  prompts        text commands and the ordered prompt queue (no ROS)
  ros_in         ROS messages -> images and prompts; the camera subscription
  ros_out        results -> ROS messages; diagnostics statuses
  node           the lifecycle node: wiring, parameters, frame worker, prompt intake and applier
  tools          offline: the seem-ros CLI, demo, frame sources, recording, evaluation
"""
