"""Prompts: text commands, clicks and SegmentationPrompt messages -> what the model is asked."""
