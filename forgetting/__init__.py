"""forgetting: reproduce and extend Page's "How to Train Your ResNet" Part 2 (catastrophic forgetting)."""

__version__ = "0.1.0"
