"""Compression for deployment, one technique a file: quantize, prune, lowrank, lora."""
