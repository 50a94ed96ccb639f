"""SEEM (Segment Everything Everywhere All at Once, v1) as PyTorch nn.Modules: backbones, pixel
decoders, the language encoder and tokenizer, the decoder and SEEM itself. No ROS imports here."""
