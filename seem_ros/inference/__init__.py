"""From modules to answers: the predictor (one image, any number of prompts), the frame engine (every
object of a camera frame in one decoder pass), visual prompts, post-processing."""
