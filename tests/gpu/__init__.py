"""Tests that every path runs on a CUDA GPU (issue 23); skipped, with the reason, without one."""
