"""Evaluation: FVD with the Kinetics-400 I3D, prompt fidelity, frame agreement, benchmarks."""
