"""Adapting a trained model to a new task: forgetting under full fine-tuning and LoRA, and merging back."""
