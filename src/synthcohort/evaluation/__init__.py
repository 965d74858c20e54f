"""Evaluation: fidelity, utility, privacy attacks, study evidence, HTML/JSON report."""
