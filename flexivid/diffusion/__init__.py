"""Rectified-flow training target, samplers, patch schedules and guidance."""
