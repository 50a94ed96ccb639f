"""Prompts: text commands and the one ordered queue every prompt goes through."""
